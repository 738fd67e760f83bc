//! `IncidentRunActor`: one per running root-cause analysis. It drives a background chat
//! session of the org's agent account (the session, run and tool actors do the work, with
//! `interactive = false`, so anything that changes infrastructure is declined, never asked),
//! turning the turn's frames into the incident's thoughts as they arrive, and ends by writing
//! the structured result. An analysis re-queued after its node went away continues its run:
//! the model is shown the steps already stored, and a tool call with no stored result is
//! recorded as interrupted, never run again by the analysis itself.

use std::sync::Arc;

use aurora_storage::auth::Principal;
use aurora_storage::entities::{incident_alerts, incident_thoughts};
use aurora_storage::incidents::analysis::{Claimed, NewCitation, NewThought, RcaResult};
use aurora_storage::incidents::Incidents;
use aurora_storage::sessions::Sessions;
use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Deserialize;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::protocol::{ErrorCode, Mode, RunStatus, ServerFrame};
use crate::session::SessionMsg;
use crate::{ActorSnapshot, SnapshotOwner};

/// Delivers a message to a session (the node's sessions supervisor).
pub trait SessionRouter: Send + Sync {
    fn route(&self, session_id: Uuid, who: Principal, msg: SessionMsg) -> Result<(), String>;
}

/// What every analysis of a node shares.
#[derive(Clone)]
pub struct RunShared {
    pub incidents: Incidents,
    pub sessions: Sessions,
    pub router: Arc<dyn SessionRouter>,
    /// This node's name (the claim's owner).
    pub node: String,
    /// The model analyses use (`None`: the node's default).
    pub model: Option<String>,
}

pub struct IncidentRunArgs {
    pub claimed: Claimed,
    pub shared: RunShared,
}

pub enum IncidentRunMsg {
    Status(RpcReplyPort<ActorSnapshot>),
}

impl ractor::Message for IncidentRunMsg {}

pub struct IncidentRunState {
    _live: crate::metrics::Live,
    incident_id: Uuid,
    org_id: Uuid,
    started_at: DateTime<Utc>,
    task: tokio::task::JoinHandle<()>,
}

pub struct IncidentRunActor;

/// The stop reason of an analysis that ended with an error (recorded on the incident).
pub const RUN_FAILED: &str = "analysis failed";

impl Actor for IncidentRunActor {
    type Msg = IncidentRunMsg;
    type State = IncidentRunState;
    type Arguments = IncidentRunArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<IncidentRunMsg>,
        args: IncidentRunArgs,
    ) -> Result<IncidentRunState, ActorProcessingErr> {
        let incident_id = args.claimed.incident.id;
        let org_id = args.claimed.incident.org_id;
        let task = tokio::spawn(async move {
            let shared = args.shared.clone();
            let claimed = args.claimed;
            let run = claimed.run;
            let outcome = analyse(&shared, &claimed).await;
            let reason = match &outcome {
                Ok(_) => "analysis finished",
                Err(_) => RUN_FAILED,
            };
            if let Err(e) = &outcome {
                tracing::warn!(%incident_id, error = %e, "incident analysis failed");
            }
            if let Err(e) = shared
                .incidents
                .finish_analysis(org_id, incident_id, run, &shared.node, outcome)
                .await
            {
                // Left running: the stale-run job queues it again.
                tracing::error!(%incident_id, error = %e, "cannot record the analysis' end");
            }
            myself.stop(Some(reason.into()));
        });
        Ok(IncidentRunState {
            _live: crate::metrics::Live::new("incident_run"),
            incident_id,
            org_id,
            started_at: Utc::now(),
            task,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<IncidentRunMsg>,
        state: &mut IncidentRunState,
    ) -> Result<(), ActorProcessingErr> {
        // Stopped from outside (shutdown): the claim stays `running` and goes back to the
        // queue when its heartbeat goes stale.
        state.task.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<IncidentRunMsg>,
        msg: IncidentRunMsg,
        state: &mut IncidentRunState,
    ) -> Result<(), ActorProcessingErr> {
        let IncidentRunMsg::Status(reply) = msg;
        let mut snap = ActorSnapshot::new(
            "incident_run",
            state.incident_id.to_string(),
            "running",
            state.started_at,
        );
        snap.owner = Some(SnapshotOwner {
            org_id: state.org_id,
            user_id: None,
        });
        let _ = reply.send(snap);
        Ok(())
    }
}

/// Runs the analysis to its result.
async fn analyse(shared: &RunShared, claimed: &Claimed) -> Result<RcaResult, String> {
    let inc = &claimed.incident;
    let (org_id, incident_id, run) = (inc.org_id, inc.id, claimed.run);
    let err = |e: aurora_storage::StorageError| e.to_string();
    let agent = shared.incidents.agent(org_id).await.map_err(err)?;
    let session_id = match inc.session_id {
        Some(s) => s,
        None => {
            let title = format!("Incident: {}", inc.title);
            let title: String = title.chars().take(500).collect();
            let s = shared
                .sessions
                .create(&agent, Some(&title))
                .await
                .map_err(err)?;
            shared
                .incidents
                .set_session(org_id, incident_id, s.id)
                .await
                .map_err(err)?;
            s.id
        }
    };
    let alerts = shared
        .incidents
        .alerts_of(org_id, incident_id, 50)
        .await
        .map_err(err)?;
    let before = shared
        .incidents
        .thoughts(org_id, incident_id)
        .await
        .map_err(err)?;
    let earlier: Vec<&incident_thoughts::Model> = before.iter().filter(|t| t.run == run).collect();
    // Tool calls of this run that never got a result: interrupted, and not run again here.
    // (The session's turn answers them the same way; that echo is not recorded twice.)
    let mut noted: std::collections::HashSet<String> = std::collections::HashSet::new();
    for call in interrupted(&earlier) {
        noted.extend(call.tool_call_id.clone());
        let note = NewThought {
            kind: "tool_result".into(),
            content: "interrupted: the node running this call stopped before it reported a \
                      result; it is not run again"
                .into(),
            tool_name: call.tool_name.clone(),
            tool_call_id: call.tool_call_id.clone(),
        };
        shared
            .incidents
            .add_thought(org_id, incident_id, run, note)
            .await
            .map_err(err)?;
    }
    let earlier = match earlier.is_empty() {
        true => Vec::new(),
        false => shared
            .incidents
            .thoughts(org_id, incident_id)
            .await
            .map_err(err)?
            .into_iter()
            .filter(|t| t.run == run)
            .collect(),
    };
    let query = brief(inc, &alerts, &earlier);
    let (tx, mut rx) = mpsc::channel::<ServerFrame>(256);
    shared.router.route(
        session_id,
        agent.clone(),
        SessionMsg::Query {
            query,
            mode: Mode::Agent,
            model: shared.model.clone(),
            interactive: false,
            frames: tx,
            role: None,
        },
    )?;
    let mut last_answer = String::new();
    let mut failure: Option<String> = None;
    let mut outputs: Vec<(String, String, String)> = Vec::new(); // (call id, tool, output)
    while let Some(frame) = rx.recv().await {
        let thought = match frame {
            ServerFrame::Status { data, .. } if data.status == RunStatus::End => break,
            ServerFrame::Message { data, .. } if data.is_complete => {
                last_answer = data.text.clone();
                Some(NewThought {
                    kind: "thought".into(),
                    content: data.text,
                    tool_name: None,
                    tool_call_id: None,
                })
            }
            ServerFrame::ToolCall { data, .. } if data.status == "running" => Some(NewThought {
                kind: "tool_call".into(),
                content: serde_json::to_string(&data.input).unwrap_or_default(),
                tool_name: Some(data.tool_name),
                tool_call_id: Some(data.tool_call_id),
            }),
            ServerFrame::ToolResult { data, .. } => {
                outputs.push((
                    data.tool_call_id.clone(),
                    data.tool_name.clone(),
                    data.output.clone(),
                ));
                Some(NewThought {
                    kind: "tool_result".into(),
                    content: data.output,
                    tool_name: Some(data.tool_name),
                    tool_call_id: Some(data.tool_call_id),
                })
            }
            ServerFrame::ToolError { data, .. } if noted.contains(&data.tool_call_id) => None,
            ServerFrame::ToolError { data, .. } => Some(NewThought {
                kind: "tool_result".into(),
                content: format!("error: {}", data.error),
                tool_name: Some(data.tool_name),
                tool_call_id: Some(data.tool_call_id),
            }),
            ServerFrame::Error { data, .. } if data.code != ErrorCode::ReadOnlyMode => {
                failure = Some(data.text);
                None
            }
            _ => None,
        };
        if let Some(t) = thought {
            shared
                .incidents
                .add_thought(org_id, incident_id, run, t)
                .await
                .map_err(err)?;
        }
    }
    if last_answer.is_empty() {
        return Err(failure.unwrap_or_else(|| "the analysis ended without an answer".into()));
    }
    // Results of earlier attempts of this run count as this run's outputs too.
    for t in earlier.iter().filter(|t| t.kind == "tool_result") {
        if let (Some(id), Some(name)) = (&t.tool_call_id, &t.tool_name) {
            outputs.push((id.clone(), name.clone(), t.content.clone()));
        }
    }
    let result = conclude(&last_answer, &alerts, &outputs);
    let finding = NewThought {
        kind: "finding".into(),
        content: if result.root_cause.is_empty() {
            result.summary.clone()
        } else {
            result.root_cause.clone()
        },
        tool_name: None,
        tool_call_id: None,
    };
    shared
        .incidents
        .add_thought(org_id, incident_id, run, finding)
        .await
        .map_err(err)?;
    Ok(result)
}

fn interrupted<'a>(earlier: &[&'a incident_thoughts::Model]) -> Vec<&'a incident_thoughts::Model> {
    earlier
        .iter()
        .copied()
        .filter(|c| c.kind == "tool_call")
        .filter(|c| {
            !earlier
                .iter()
                .any(|r| r.kind == "tool_result" && r.tool_call_id == c.tool_call_id)
        })
        .collect()
}

/// The analysis' instructions: the incident, its alerts, and any steps already taken.
fn brief(
    inc: &aurora_storage::entities::incidents::Model,
    alerts: &[incident_alerts::Model],
    earlier: &[incident_thoughts::Model],
) -> String {
    let mut q = format!(
        "Investigate incident {} and find its root cause.\nTitle: {}\nSeverity: {}\nService: {}\nStarted: {}\n",
        inc.id,
        inc.title,
        inc.severity,
        inc.service.as_deref().unwrap_or("unknown"),
        inc.started_at.to_rfc3339(),
    );
    if let Some(notes) = &inc.notes {
        q.push_str(&format!(
            "Notes: {}\n",
            notes.chars().take(2000).collect::<String>()
        ));
    }
    q.push_str("\nAlerts (newest first):\n");
    for a in alerts.iter().take(20) {
        q.push_str(&format!(
            "- alert {} [{}] {} (service {}, severity {}, labels {}): {}\n",
            a.id,
            a.status,
            a.title,
            a.service.as_deref().unwrap_or("unknown"),
            a.severity,
            a.labels,
            a.description.chars().take(300).collect::<String>(),
        ));
    }
    if !earlier.is_empty() {
        q.push_str(
            "\nThis analysis was interrupted and continues here. Steps already taken (do not \
             repeat tool calls whose results are shown; a call marked interrupted did not \
             report a result):\n",
        );
        for t in earlier {
            let content: String = t.content.chars().take(1500).collect();
            match (&t.tool_name, &t.tool_call_id) {
                (Some(tool), Some(id)) => {
                    q.push_str(&format!("- {} {tool} ({id}): {content}\n", t.kind))
                }
                _ => q.push_str(&format!("- {}: {content}\n", t.kind)),
            }
        }
    }
    q.push_str(
        "\nUse read-only tools only (incident_lookup, knowledge_base_search, cloud_exec for \
         reads): nothing that changes infrastructure will run. When you are done, answer with \
         one JSON object in a ```json block: {\"summary\": \"...\", \"root_cause\": \"...\", \
         \"remediation\": \"...\", \"citations\": [{\"kind\": \"kb_chunk\" | \"tool_output\" | \
         \"alert\", \"reference\": \"the document id, tool call id or alert id\", \"excerpt\": \
         \"the passage it rests on\"}]}",
    );
    q
}

#[derive(Deserialize, Default)]
struct Answer {
    #[serde(default)]
    summary: String,
    #[serde(default)]
    root_cause: String,
    #[serde(default)]
    remediation: String,
    #[serde(default)]
    citations: Vec<Cited>,
}

#[derive(Deserialize)]
struct Cited {
    kind: String,
    reference: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    excerpt: String,
}

/// The structured result in the final answer, its citations checked against what the run
/// saw: an alert of the incident, a tool call of the run, a knowledge-base passage that a
/// search of the run returned. Citations that point at nothing are dropped. An answer without
/// the JSON object is kept as the summary.
pub fn conclude(
    answer: &str,
    alerts: &[incident_alerts::Model],
    outputs: &[(String, String, String)],
) -> RcaResult {
    let parsed = json_object(answer).and_then(|s| serde_json::from_str::<Answer>(s).ok());
    let Some(a) = parsed else {
        return RcaResult {
            summary: answer.trim().to_string(),
            ..Default::default()
        };
    };
    let mut citations = Vec::new();
    for c in a.citations {
        let excerpt_of = |s: &str| s.chars().take(500).collect::<String>();
        let checked = match c.kind.as_str() {
            "alert" => alerts
                .iter()
                .find(|al| al.id.to_string() == c.reference)
                .map(|al| NewCitation {
                    kind: c.kind.clone(),
                    reference: c.reference.clone(),
                    title: al.title.clone(),
                    excerpt: if c.excerpt.is_empty() {
                        excerpt_of(&al.title)
                    } else {
                        c.excerpt.clone()
                    },
                }),
            "tool_output" => {
                outputs
                    .iter()
                    .find(|(id, _, _)| *id == c.reference)
                    .map(|(id, tool, out)| NewCitation {
                        kind: c.kind.clone(),
                        reference: id.clone(),
                        title: tool.clone(),
                        excerpt: if c.excerpt.is_empty() {
                            excerpt_of(out)
                        } else {
                            c.excerpt.clone()
                        },
                    })
            }
            "kb_chunk" => outputs
                .iter()
                .find(|(_, tool, out)| {
                    tool == crate::tools::knowledge_search::NAME
                        && !c.reference.is_empty()
                        && out.contains(&c.reference)
                })
                .map(|(_, _, out)| NewCitation {
                    kind: c.kind.clone(),
                    reference: c.reference.clone(),
                    title: if c.title.is_empty() {
                        "knowledge base".into()
                    } else {
                        c.title.clone()
                    },
                    excerpt: if c.excerpt.is_empty() {
                        excerpt_of(out)
                    } else {
                        c.excerpt.clone()
                    },
                }),
            _ => None,
        };
        match checked {
            Some(c) => citations.push(c),
            None => tracing::debug!(kind = %c.kind, "dropped a citation that points at nothing"),
        }
    }
    RcaResult {
        summary: if a.summary.is_empty() {
            answer.trim().to_string()
        } else {
            a.summary
        },
        root_cause: a.root_cause,
        remediation: a.remediation,
        citations,
    }
}

/// The JSON object of an answer: a ```json block's, or from the first `{` to the last `}`.
fn json_object(answer: &str) -> Option<&str> {
    if let Some(start) = answer.find("```json") {
        let rest = &answer[start + 7..];
        if let Some(end) = rest.find("```") {
            return Some(rest[..end].trim());
        }
    }
    let start = answer.find('{')?;
    let end = answer.rfind('}')?;
    (end > start).then(|| &answer[start..=end])
}
