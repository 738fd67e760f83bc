//! The WebSocket chat protocol's frames (../shared/PROTOCOL.md), as types. Server frames are
//! what a session streams back to whichever edge holds the client, possibly on another node,
//! so they serialize both ways.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest query accepted; longer ones get `INPUT_TOO_LARGE`.
pub const MAX_QUERY_CHARS: usize = 100_000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every tool, destructive ones after approval.
    #[default]
    Agent,
    /// Read-only tools only.
    Ask,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Execute,
    Cancel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlAction {
    Cancel,
}

/// A frame from the client.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Init {
        token: String,
    },
    #[serde(alias = "message")]
    Query {
        query: String,
        session_id: Uuid,
        #[serde(default)]
        mode: Mode,
        #[serde(default)]
        model: Option<String>,
    },
    ConfirmationResponse {
        confirmation_id: String,
        decision: Decision,
        session_id: Uuid,
    },
    Control {
        action: ControlAction,
        session_id: Uuid,
    },
}

/// The protocol's error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    Unauthorized,
    BadMessage,
    RateLimited,
    SessionBusy,
    ReadOnlyMode,
    InputTooLarge,
    LlmUnavailable,
    NotFound,
    /// The caller's role does not allow it (a viewer approving, or starting an agent-mode turn).
    Forbidden,
    Internal,
}

/// A refused client frame: the code and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    pub code: ErrorCode,
    pub message: String,
}

impl ClientFrame {
    /// Parses one text frame; anything malformed is `BAD_MESSAGE` with serde's description
    /// (unknown type, missing field, wrong type), an oversized query `INPUT_TOO_LARGE`.
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        let frame: ClientFrame = serde_json::from_str(text).map_err(|e| FrameError {
            code: ErrorCode::BadMessage,
            message: e.to_string(),
        })?;
        if let ClientFrame::Query { query, .. } = &frame {
            if query.trim().is_empty() {
                return Err(FrameError {
                    code: ErrorCode::BadMessage,
                    message: "query is empty".into(),
                });
            }
            if query.chars().count() > MAX_QUERY_CHARS {
                return Err(FrameError {
                    code: ErrorCode::InputTooLarge,
                    message: format!("query is over {MAX_QUERY_CHARS} characters"),
                });
            }
        }
        Ok(frame)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    #[serde(rename = "START")]
    Start,
    #[serde(rename = "END")]
    End,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusData {
    pub status: RunStatus,
    #[serde(
        rename = "isComplete",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub is_complete: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageData {
    pub text: String,
    pub is_chunk: bool,
    pub is_complete: bool,
    pub streaming: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCallData {
    pub tool_call_id: String,
    pub tool_name: String,
    pub input: serde_json::Value,
    /// `running` or `awaiting_confirmation`.
    pub status: String,
    pub timestamp: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolResultData {
    pub tool_call_id: String,
    pub tool_name: String,
    pub output: String,
    pub status: String,
    pub timestamp: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolErrorData {
    pub tool_call_id: String,
    pub tool_name: String,
    pub error: String,
}

impl ToolErrorData {
    /// The `tool_error` frame of `call` in `session_id`.
    pub fn frame(
        call: &aurora_models::llm::ToolCall,
        session_id: Uuid,
        error: String,
    ) -> ServerFrame {
        ServerFrame::ToolError {
            data: ToolErrorData {
                tool_call_id: call.id.clone(),
                tool_name: call.name.clone(),
                error,
            },
            session_id,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfirmationData {
    pub confirmation_id: String,
    pub tool_name: String,
    pub command: String,
    pub message: String,
    pub options: Vec<Decision>,
    pub block_reason: String,
    /// The gate's class for the command: `write` or `destructive` (reads never ask).
    pub classification: aurora_storage::classify::Class,
    /// Least role that may approve (`editor`).
    pub approver_role: aurora_storage::auth::Role,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageData {
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub estimated_cost: f64,
    pub session_totals: SessionTotals,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionTotals {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub estimated_cost: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageInfoData {
    pub total_cost: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorData {
    pub text: String,
    pub code: ErrorCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
}

/// A frame to the client: `type`, the payload in `data`, and the session where one is involved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Status {
        data: StatusData,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<Uuid>,
    },
    Message {
        data: MessageData,
        session_id: Uuid,
    },
    ToolCall {
        data: ToolCallData,
        session_id: Uuid,
    },
    ToolResult {
        data: ToolResultData,
        session_id: Uuid,
    },
    ToolError {
        data: ToolErrorData,
        session_id: Uuid,
    },
    ExecutionConfirmation {
        data: ConfirmationData,
        session_id: Uuid,
    },
    UsageUpdate {
        data: UsageData,
        session_id: Uuid,
    },
    UsageFinal {
        data: UsageData,
        session_id: Uuid,
    },
    UsageInfo {
        data: UsageInfoData,
    },
    Error {
        data: ErrorData,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<Uuid>,
    },
}

impl ServerFrame {
    pub fn error(
        code: ErrorCode,
        text: impl Into<String>,
        session_id: Option<Uuid>,
    ) -> ServerFrame {
        ServerFrame::Error {
            data: ErrorData {
                text: text.into(),
                code,
                session_id,
            },
            session_id,
        }
    }

    /// `status` START, sent on connect.
    pub fn start() -> ServerFrame {
        ServerFrame::Status {
            data: StatusData {
                status: RunStatus::Start,
                is_complete: None,
            },
            session_id: None,
        }
    }

    /// An `UNAUTHORIZED` refusal: the connection is closed after it.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ServerFrame::Error { data, .. } if data.code == ErrorCode::Unauthorized)
    }

    /// The session whose query this frame settles: its END, or a `NOT_FOUND` refusal (the
    /// one answer to a query that comes without an END; SESSION_BUSY refuses only the new
    /// query, the running turn goes on to its own END).
    pub fn settles(&self) -> Option<Uuid> {
        match self {
            ServerFrame::Status {
                data,
                session_id: Some(id),
            } if data.status == RunStatus::End => Some(*id),
            ServerFrame::Error {
                data,
                session_id: Some(id),
            } if data.code == ErrorCode::NotFound => Some(*id),
            _ => None,
        }
    }

    /// `status` END with `isComplete`, closing every turn however it ended.
    pub fn end(session_id: Uuid) -> ServerFrame {
        ServerFrame::Status {
            data: StatusData {
                status: RunStatus::End,
                is_complete: Some(true),
            },
            session_id: Some(session_id),
        }
    }
}

/// Where a session's frames go: the channel of the connection currently attached. A client that
/// reconnects re-attaches, and the running turn's remaining frames follow it to the new socket.
#[derive(Clone, Debug)]
pub struct FrameSink {
    current: std::sync::Arc<std::sync::Mutex<tokio::sync::mpsc::Sender<ServerFrame>>>,
}

impl FrameSink {
    pub fn new(tx: tokio::sync::mpsc::Sender<ServerFrame>) -> FrameSink {
        FrameSink {
            current: std::sync::Arc::new(std::sync::Mutex::new(tx)),
        }
    }

    /// Sends to the attached connection; a connection that went away just misses the frame.
    pub async fn send(&self, frame: ServerFrame) {
        let tx = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let _ = tx.send(frame).await;
    }

    /// Points the sink at another connection's channel.
    pub fn attach(&self, tx: tokio::sync::mpsc::Sender<ServerFrame>) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = tx;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SID: &str = "0193a0a0-0000-7000-8000-000000000001";

    #[test]
    fn parses_every_client_frame() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"init","token":"t"}"#).unwrap(),
            ClientFrame::Init { token: "t".into() }
        );
        let q = ClientFrame::parse(
            &json!({ "type": "query", "query": "why?", "session_id": SID }).to_string(),
        )
        .unwrap();
        assert_eq!(
            q,
            ClientFrame::Query {
                query: "why?".into(),
                session_id: SID.parse().unwrap(),
                mode: Mode::Agent,
                model: None
            }
        );
        // `message` is an alias of `query`.
        let m = ClientFrame::parse(&json!({ "type": "message", "query": "why?", "session_id": SID, "mode": "ask", "model": "gpt-4o" }).to_string()).unwrap();
        assert!(matches!(
            m,
            ClientFrame::Query {
                mode: Mode::Ask,
                model: Some(_),
                ..
            }
        ));
        let c = ClientFrame::parse(&json!({ "type": "confirmation_response", "confirmation_id": "c1", "decision": "execute", "session_id": SID }).to_string()).unwrap();
        assert!(matches!(
            c,
            ClientFrame::ConfirmationResponse {
                decision: Decision::Execute,
                ..
            }
        ));
        let x = ClientFrame::parse(
            &json!({ "type": "control", "action": "cancel", "session_id": SID }).to_string(),
        )
        .unwrap();
        assert!(matches!(
            x,
            ClientFrame::Control {
                action: ControlAction::Cancel,
                ..
            }
        ));
    }

    #[test]
    fn malformed_frames_are_bad_message() {
        for bad in [
            "not json",
            "[]",
            r#"{"type":"dance"}"#,
            r#"{"query":"no type"}"#,
            r#"{"type":"query","session_id":"0193a0a0-0000-7000-8000-000000000001"}"#,
            r#"{"type":"query","query":42,"session_id":"0193a0a0-0000-7000-8000-000000000001"}"#,
            r#"{"type":"query","query":"x","session_id":"not-a-uuid"}"#,
            r#"{"type":"query","query":"x","session_id":"0193a0a0-0000-7000-8000-000000000001","mode":"god"}"#,
            r#"{"type":"query","query":"   ","session_id":"0193a0a0-0000-7000-8000-000000000001"}"#,
            r#"{"type":"confirmation_response","confirmation_id":"c","decision":"maybe","session_id":"0193a0a0-0000-7000-8000-000000000001"}"#,
            r#"{"type":"control","action":"pause","session_id":"0193a0a0-0000-7000-8000-000000000001"}"#,
        ] {
            let err = ClientFrame::parse(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadMessage, "{bad}");
            assert!(!err.message.is_empty());
        }
        let huge =
            json!({ "type": "query", "query": "x".repeat(MAX_QUERY_CHARS + 1), "session_id": SID })
                .to_string();
        assert_eq!(
            ClientFrame::parse(&huge).unwrap_err().code,
            ErrorCode::InputTooLarge
        );
    }

    #[test]
    fn server_frames_have_the_protocol_shapes() {
        let sid: Uuid = SID.parse().unwrap();
        assert_eq!(
            serde_json::to_value(ServerFrame::start()).unwrap(),
            json!({ "type": "status", "data": { "status": "START" } })
        );
        assert_eq!(
            serde_json::to_value(ServerFrame::end(sid)).unwrap(),
            json!({ "type": "status", "data": { "status": "END", "isComplete": true }, "session_id": SID })
        );
        assert_eq!(
            serde_json::to_value(ServerFrame::error(
                ErrorCode::SessionBusy,
                "busy",
                Some(sid)
            ))
            .unwrap(),
            json!({ "type": "error", "data": { "text": "busy", "code": "SESSION_BUSY", "session_id": SID }, "session_id": SID })
        );
        let msg = ServerFrame::Message {
            data: MessageData {
                text: "hi".into(),
                is_chunk: true,
                is_complete: false,
                streaming: true,
            },
            session_id: sid,
        };
        let v = serde_json::to_value(&msg).unwrap();
        assert_eq!(
            v,
            json!({ "type": "message", "data": { "text": "hi", "is_chunk": true, "is_complete": false, "streaming": true }, "session_id": SID })
        );
        // And back, as a frame relayed from another node.
        assert_eq!(serde_json::from_value::<ServerFrame>(v).unwrap(), msg);
        let info = ServerFrame::UsageInfo {
            data: UsageInfoData { total_cost: 0.25 },
        };
        assert_eq!(
            serde_json::to_value(info).unwrap(),
            json!({ "type": "usage_info", "data": { "total_cost": 0.25 } })
        );
    }
}
