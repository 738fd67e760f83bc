//! One agent turn: the LLM / tool loop that an `AgentRunActor` drives. It streams the answer as
//! protocol frames, runs the tools the model asks for through the command policy gate (asking a
//! human before anything destructive in an interactive turn), records every model call's usage,
//! and returns the messages the turn added to the history. Kept free of actor plumbing so the
//! loop itself is tested directly against a scripted provider.

use std::sync::Arc;
use std::time::Duration;

use aurora_models::llm::{ChatMessage, ChatRequest, LlmEvent, LlmProvider, ToolCall, Usage};
use aurora_models::pricing::PriceTable;
use aurora_storage::audit::Audit;
use aurora_storage::auth::{Accounts, Principal, Role};
use aurora_storage::classify::{classify, Class, Classification};
use aurora_storage::policies::{Gate, GateMode, Policies, Verdict};
use aurora_storage::turns::{OpenTurn, Pending, TurnMark, TurnWrite, TurnWriter};
use aurora_storage::usage::UsageRecord;
use chrono::Utc;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::knowledge::KnowledgeBase;
use crate::protocol::{
    ConfirmationData, Decision, ErrorCode, FrameSink, MessageData, Mode, ServerFrame,
    SessionTotals, ToolCallData, ToolErrorData, ToolResultData, UsageData,
};
use crate::tool_execution::{execute, ToolJob};
use crate::tools::cloud_exec::{self, CloudExec};
use crate::tools::grants::{Grants, OrgGrant};
use crate::tools::incident_lookup;
use crate::tools::knowledge_search;
use crate::tools::terraform::{self, Owner, Terraform};
use crate::tools::ToolError;

/// What a turn needs from the node.
#[derive(Clone)]
pub struct TurnDeps {
    pub llm: Arc<dyn LlmProvider>,
    pub prices: PriceTable,
    pub cloud_exec: CloudExec,
    pub terraform: Terraform,
    /// The org knowledge base the agent can search (absent when no embedding model is loaded).
    pub knowledge: Option<Arc<KnowledgeBase>>,
    /// The orgs' incidents, for the `incident_lookup` tool (absent on nodes built without them).
    pub incidents: Option<aurora_storage::incidents::Incidents>,
    pub policies: Policies,
    pub audit: Audit,
    /// The orgs' credentials for their tools.
    pub grants: Grants,
    /// Approvers' roles, read when they approve.
    pub accounts: Accounts,
    /// Persists finished turns (history and usage) with group commit.
    pub writer: TurnWriter,
    /// Most model calls in one turn.
    pub max_steps: usize,
    /// How long an approval may wait for the human.
    pub approval_timeout: Duration,
    /// Folds long conversations into a summary (absent: never folded).
    pub folding: Option<crate::summary::Folding>,
    /// Longest a whole turn may run; then it is cancelled, keeping what it produced.
    pub turn_timeout: Duration,
    /// This node's name, recorded in the marker of each turn it runs: a node that sees it die
    /// continues its turns.
    pub node: String,
}

pub struct TurnInput {
    pub who: Principal,
    pub session_id: Uuid,
    pub history: Vec<ChatMessage>,
    pub query: String,
    pub model: String,
    pub mode: Mode,
    /// A human is connected and can approve (false for background runs such as incident RCA).
    pub interactive: bool,
    /// Continue the turn the session's history ends with, left open by a node that died (no
    /// new query: `query` is empty). Its marker was claimed for this node already.
    pub resume: bool,
}

/// How a turn ended.
#[derive(Clone, Debug, PartialEq)]
pub enum TurnStatus {
    Completed,
    Cancelled,
    Failed { code: ErrorCode, message: String },
}

#[derive(Debug)]
pub struct TurnOutcome {
    /// The messages this turn added: the user's query, the assistant's answers and the tool
    /// results, including the partial answer of a cancelled turn.
    pub messages: Vec<ChatMessage>,
    pub status: TurnStatus,
    pub totals: SessionTotals,
    /// One usage row per model call, for the turn writer.
    pub usage: Vec<UsageRecord>,
    /// The conversation was folded into a summary at the turn's start: the session's context
    /// is no longer its old one plus `messages` (it reloads it from storage).
    pub folded: bool,
    /// How many of `messages` were queued for storage as the turn went (its durable steps);
    /// `usage` holds only the rows not queued yet. The rest goes with the turn's last write.
    pub written: usize,
    /// The turn opened the session's turn marker (its last write closes it).
    pub opened: bool,
    /// A step of the turn was not stored: the session's context must be read again from
    /// storage rather than extended with `messages`.
    pub unsaved_steps: bool,
    /// Steps queued and not yet known committed. Not awaited here: the turn's last write,
    /// queued behind them, commits after them, so its caller looks at them once that write is
    /// answered (waiting first would put a whole batch round in every turn's latency).
    pub pending: Vec<Pending>,
}

/// The channels a turn talks through.
pub struct TurnIo {
    pub frames: FrameSink,
    /// `(confirmation_id, decision)` from the client.
    /// `(confirmation_id, decision, approver)`: the approver is the user who answered.
    pub decisions: mpsc::Receiver<(String, Decision, Uuid)>,
    /// Flips to true when the client cancels.
    pub cancel: watch::Receiver<bool>,
    /// The actor tool executions are linked under (the turn's `AgentRunActor`).
    pub supervisor: Option<ractor::ActorCell>,
}

/// A tool call ready to go through the gate.
struct Prepared {
    /// What the policy gate and the audit log see (`kubectl delete pod x`, `terraform apply`).
    command: String,
    /// Read, write, destructive or forbidden, and why.
    class: Classification,
    /// Changes only the session's own directory (terraform write): agent mode runs it without
    /// asking; ask mode and background runs still refuse it.
    local_only: bool,
    /// False for tools that only read the org's own data (knowledge search): the command
    /// policy gate, which judges infrastructure commands, does not apply to them.
    gated: bool,
    job: ToolJob,
}

/// The tools offered to the model: ask mode offers only those that can run read-only; the
/// knowledge-base search only when the node has a knowledge base, the incident lookup only
/// when it has the incident store.
pub fn tools_for(
    mode: Mode,
    knowledge: bool,
    incidents: bool,
) -> Vec<aurora_models::llm::ToolSpec> {
    let mut tools = match mode {
        Mode::Agent => vec![CloudExec::spec(), Terraform::spec()],
        Mode::Ask => vec![CloudExec::spec()],
    };
    if knowledge {
        tools.push(knowledge_search::spec());
    }
    if incidents {
        tools.push(incident_lookup::spec());
    }
    tools
}

/// [`tools_for`], built once per combination: every model call of every turn offers one of
/// these eight sets.
fn shared_tools(
    mode: Mode,
    knowledge: bool,
    incidents: bool,
) -> Arc<[aurora_models::llm::ToolSpec]> {
    use std::sync::LazyLock;
    type Set = LazyLock<Arc<[aurora_models::llm::ToolSpec]>>;
    static SETS: [Set; 8] = [
        LazyLock::new(|| tools_for(Mode::Agent, false, false).into()),
        LazyLock::new(|| tools_for(Mode::Agent, false, true).into()),
        LazyLock::new(|| tools_for(Mode::Agent, true, false).into()),
        LazyLock::new(|| tools_for(Mode::Agent, true, true).into()),
        LazyLock::new(|| tools_for(Mode::Ask, false, false).into()),
        LazyLock::new(|| tools_for(Mode::Ask, false, true).into()),
        LazyLock::new(|| tools_for(Mode::Ask, true, false).into()),
        LazyLock::new(|| tools_for(Mode::Ask, true, true).into()),
    ];
    let i = usize::from(matches!(mode, Mode::Ask)) * 4
        + usize::from(knowledge) * 2
        + usize::from(incidents);
    Arc::clone(&SETS[i])
}

enum Step {
    /// The model answered without asking for tools.
    Done,
    /// Tools ran; the model gets their results next.
    Continue,
    Cancelled,
}

struct Turn<'a> {
    deps: &'a TurnDeps,
    input: &'a TurnInput,
    io: &'a mut TurnIo,
    added: Vec<ChatMessage>,
    totals: SessionTotals,
    usage: Vec<UsageRecord>,
    /// The org's credentials, fetched at the turn's first tool call.
    grant: Option<Arc<OrgGrant>>,
    /// The model's view when the conversation was folded at the start (else `input.history`).
    folded: Option<Vec<ChatMessage>>,
    /// Durable steps: how many of `added` and of `usage` are queued for storage, the queued
    /// writes not yet known committed, and whether the session's turn marker is open.
    written: usize,
    usage_written: usize,
    pending: Vec<Pending>,
    opened: bool,
    /// A queued step failed to commit.
    unsaved_steps: bool,
}

/// Runs one turn to its end. Never panics on provider or tool failures: they become frames and
/// a `Failed` status.
pub async fn run_turn(deps: &TurnDeps, input: &TurnInput, io: &mut TurnIo) -> TurnOutcome {
    // Calls a dead node left without results are answered first (never run again here), so
    // the history the model sees stays well formed.
    let unanswered = unanswered(&input.history);
    let mut added: Vec<ChatMessage> = unanswered
        .iter()
        .map(|call| ChatMessage::Tool {
            tool_call_id: call.id.clone(),
            content: INTERRUPTED.into(),
        })
        .collect();
    if !input.resume {
        added.push(ChatMessage::User {
            content: input.query.clone(),
        });
    }
    let mut turn = Turn {
        deps,
        input,
        io,
        added,
        totals: SessionTotals::default(),
        usage: Vec::new(),
        grant: None,
        folded: None,
        written: 0,
        usage_written: 0,
        pending: Vec::new(),
        // A resumed turn's marker was claimed for this node before it started.
        opened: input.resume,
        unsaved_steps: false,
    };
    for call in &unanswered {
        turn.send(ToolErrorData::frame(
            call,
            input.session_id,
            INTERRUPTED.into(),
        ))
        .await;
    }
    let status = if input.who.role < Role::Editor && input.mode == Mode::Agent {
        // Viewers may ask, never act: refused before the model is called.
        TurnStatus::Failed {
            code: ErrorCode::Forbidden,
            message: "viewers can only use ask mode (read-only); ask an editor to act".into(),
        }
    } else {
        // The query is durable once accepted; the turn does not wait for it (its first tool
        // call does).
        turn.queue_step().await;
        if !input.resume {
            turn.fold().await;
        }
        turn.run().await
    };
    let outcome = match &status {
        TurnStatus::Completed => "completed",
        TurnStatus::Cancelled => "cancelled",
        TurnStatus::Failed { .. } => "failed",
    };
    crate::metrics::TURNS.with_label_values(&[outcome]).inc();
    if let TurnStatus::Failed { code, message } = &status {
        turn.send(ServerFrame::error(
            *code,
            message.clone(),
            Some(input.session_id),
        ))
        .await;
    }
    TurnOutcome {
        folded: turn.folded.is_some(),
        written: turn.written,
        opened: turn.opened,
        unsaved_steps: turn.unsaved_steps,
        pending: std::mem::take(&mut turn.pending),
        usage: turn
            .usage
            .split_off(turn.usage_written.min(turn.usage.len())),
        messages: turn.added,
        status,
        totals: turn.totals,
    }
}

/// What the model is told for a tool call whose node stopped before its result was saved.
pub const INTERRUPTED: &str = "interrupted: the node running this tool call stopped before its \
    result was saved. It was not run again; whether it took effect is unknown, so check before \
    repeating it.";

/// `history` with every tool result that answers no earlier call, or a call already answered,
/// left out: what a lost step or two nodes writing one turn (one frozen past its death) can
/// leave in storage, and what a provider refuses. With [`unanswered`] answered first, the model
/// always gets a well-formed conversation; the history a user reads keeps everything.
pub fn well_formed(history: Vec<ChatMessage>) -> Vec<ChatMessage> {
    let mut called: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut answered: std::collections::HashSet<String> = std::collections::HashSet::new();
    history
        .into_iter()
        .filter(|m| match m {
            ChatMessage::Assistant { tool_calls, .. } => {
                called.extend(tool_calls.iter().map(|c| c.id.clone()));
                true
            }
            ChatMessage::Tool { tool_call_id, .. } => {
                called.contains(tool_call_id) && answered.insert(tool_call_id.clone())
            }
            _ => true,
        })
        .collect()
}

/// The tool calls of the history's last assistant message that have no result: their turn's
/// node stopped between saving the call and saving its result.
pub fn unanswered(history: &[ChatMessage]) -> Vec<ToolCall> {
    let Some((at, calls)) = history.iter().enumerate().rev().find_map(|(i, m)| match m {
        ChatMessage::Assistant { tool_calls, .. } => Some((i, tool_calls)),
        _ => None,
    }) else {
        return Vec::new();
    };
    let answered: std::collections::HashSet<&str> = history[at + 1..]
        .iter()
        .filter_map(|m| match m {
            ChatMessage::Tool { tool_call_id, .. } => Some(tool_call_id.as_str()),
            _ => None,
        })
        .collect();
    calls
        .iter()
        .filter(|c| !answered.contains(c.id.as_str()))
        .cloned()
        .collect()
}

impl Turn<'_> {
    /// Queues what the turn added since its last step, with the usage rows since, as one
    /// write; the first opens the session's turn marker. A step that cannot be queued is
    /// logged and goes with a later one.
    async fn queue_step(&mut self) {
        let input = self.input;
        let messages: Vec<serde_json::Value> = self.added[self.written..]
            .iter()
            .filter_map(|m| serde_json::to_value(m).ok())
            .collect();
        let usage = self.usage[self.usage_written..].to_vec();
        if self.opened && messages.is_empty() && usage.is_empty() {
            return;
        }
        let mark = if self.opened {
            TurnMark::Keep
        } else {
            TurnMark::Open(OpenTurn {
                node: self.deps.node.clone(),
                model: input.model.clone(),
                mode: match input.mode {
                    Mode::Agent => "agent".into(),
                    Mode::Ask => "ask".into(),
                },
                interactive: input.interactive,
                started_at: Utc::now(),
                resumes: 0,
            })
        };
        let write = TurnWrite {
            who: input.who.clone(),
            session_id: input.session_id,
            messages,
            context: None,
            first_query: (!self.opened && !input.resume).then(|| input.query.clone()),
            usage,
            mark,
        };
        match self.deps.writer.enqueue(write).await {
            Ok(pending) => {
                self.pending.push(pending);
                self.written = self.added.len();
                self.usage_written = self.usage.len();
                self.opened = true;
            }
            Err(e) => {
                self.unsaved_steps = true;
                tracing::error!(session_id = %input.session_id, error = %e, "cannot queue a step of the turn")
            }
        }
    }

    /// Waits until every queued step is committed: before a tool runs, so that a call that
    /// changes infrastructure is always on record first (and never run twice by a node that
    /// continues the turn).
    async fn durable(&mut self) -> Result<(), String> {
        let mut failed = None;
        for pending in self.pending.drain(..) {
            if let Err(e) = pending.committed().await {
                failed = Some(e.to_string());
                self.unsaved_steps = true;
            }
        }
        failed.map_or(Ok(()), Err)
    }

    async fn send(&self, frame: ServerFrame) {
        // A client that went away does not stop the turn; its frames are simply dropped.
        self.io.frames.send(frame).await;
    }

    fn cancelled(&self) -> bool {
        *self.io.cancel.borrow()
    }

    /// Folds a conversation about to pass its budget (see [`crate::summary`]). A failed fold
    /// is logged and the turn goes on unfolded: the provider may still take it.
    async fn fold(&mut self) {
        let Some(folding) = &self.deps.folding else {
            return;
        };
        let input = self.input;
        let folded = crate::summary::fold_if_needed(
            folding,
            self.deps.llm.as_ref(),
            &input.who,
            input.session_id,
            &input.model,
            &input.history,
            &input.query,
        )
        .await;
        match folded {
            Ok(Some(fold)) => {
                self.record_usage(fold.usage).await;
                self.folded = Some(fold.history);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(session_id = %input.session_id, error = %e, "cannot fold a long conversation")
            }
        }
    }

    async fn run(&mut self) -> TurnStatus {
        for _ in 0..self.deps.max_steps {
            match self.model_step().await {
                Ok(Step::Done) => return TurnStatus::Completed,
                Ok(Step::Continue) => continue,
                Ok(Step::Cancelled) => return TurnStatus::Cancelled,
                Err(status) => return status,
            }
        }
        TurnStatus::Failed {
            code: ErrorCode::Internal,
            message: format!("stopped after {} model calls", self.deps.max_steps),
        }
    }

    /// One model call and the tools it asks for. `Ok(Done)` when the model answered without
    /// tools.
    async fn model_step(&mut self) -> Result<Step, TurnStatus> {
        let sid = self.input.session_id;
        let mut messages = self.folded.as_ref().unwrap_or(&self.input.history).clone();
        messages.extend(self.added.iter().cloned());
        let request = ChatRequest {
            model: self.input.model.clone(),
            messages,
            tools: shared_tools(
                self.input.mode,
                self.deps.knowledge.is_some(),
                self.deps.incidents.is_some(),
            ),
            max_tokens: None,
        };
        let unavailable = |e: aurora_models::llm::LlmError| TurnStatus::Failed {
            code: ErrorCode::LlmUnavailable,
            message: e.to_string(),
        };
        let mut stream = self.deps.llm.stream(request).await.map_err(unavailable)?;
        let mut text = String::new();
        let mut calls: Vec<ToolCall> = Vec::new();
        let mut cancel = self.io.cancel.clone();
        loop {
            let event = tokio::select! {
                e = stream.next() => e,
                _ = cancel.wait_for(|c| *c) => {
                    self.keep_answer(text, vec![]);
                    return Ok(Step::Cancelled);
                }
            };
            match event {
                Some(Ok(LlmEvent::Text(t))) => {
                    text.push_str(&t);
                    self.send(ServerFrame::Message {
                        data: MessageData {
                            text: t,
                            is_chunk: true,
                            is_complete: false,
                            streaming: true,
                        },
                        session_id: sid,
                    })
                    .await;
                }
                Some(Ok(LlmEvent::ToolCall(c))) => calls.push(c),
                Some(Ok(LlmEvent::Done { usage, .. })) => {
                    self.record_usage(usage.unwrap_or_default()).await;
                    break;
                }
                Some(Err(e)) => {
                    self.keep_answer(text, vec![]);
                    return Err(unavailable(e));
                }
                None => {
                    self.keep_answer(text, vec![]);
                    return Err(TurnStatus::Failed {
                        code: ErrorCode::LlmUnavailable,
                        message: "the answer stream ended early".into(),
                    });
                }
            }
        }
        if !text.is_empty() {
            self.send(ServerFrame::Message {
                data: MessageData {
                    text: text.clone(),
                    is_chunk: false,
                    is_complete: true,
                    streaming: false,
                },
                session_id: sid,
            })
            .await;
        }
        let done = calls.is_empty();
        // The history keeps the calls' arguments with the org's secrets masked.
        let stored_calls = match calls.is_empty() {
            true => Vec::new(),
            false => match self.grant().await {
                Ok(g) => calls
                    .iter()
                    .map(|c| ToolCall {
                        arguments: g.secrets.redact(&c.arguments),
                        ..c.clone()
                    })
                    .collect(),
                Err(_) => calls
                    .iter()
                    .map(|c| ToolCall {
                        arguments: crate::tools::redact::redact(&c.arguments),
                        ..c.clone()
                    })
                    .collect(),
            },
        };
        self.added.push(ChatMessage::Assistant {
            content: text,
            tool_calls: stored_calls,
        });
        if !calls.is_empty() {
            self.queue_step().await;
        }
        for call in calls {
            if self.cancelled() {
                self.added.push(ChatMessage::Tool {
                    tool_call_id: call.id,
                    content: "cancelled by the user".into(),
                });
                continue;
            }
            // The call, and every result before it, is on record before it runs; if it
            // cannot be, the call is not run.
            if self.written < self.added.len() {
                self.queue_step().await;
            }
            let content = match self.durable().await {
                Ok(()) if self.written == self.added.len() => self.tool(&call).await,
                failed => {
                    let why = failed.err().unwrap_or_else(|| "not queued".into());
                    tracing::error!(session_id = %sid, error = %why, "a tool call was not saved; not running it");
                    let error = "not run: the turn could not be saved, and a tool call is only \
                        run once it is on record"
                        .to_string();
                    self.send(ToolErrorData::frame(&call, sid, error.clone()))
                        .await;
                    error
                }
            };
            self.added.push(ChatMessage::Tool {
                tool_call_id: call.id,
                content,
            });
            self.queue_step().await;
        }
        if self.cancelled() {
            return Ok(Step::Cancelled);
        }
        Ok(if done { Step::Done } else { Step::Continue })
    }

    /// Keeps what was streamed before a cancel or failure, so the history shows it.
    fn keep_answer(&mut self, text: String, tool_calls: Vec<ToolCall>) {
        if !text.is_empty() || !tool_calls.is_empty() {
            self.added.push(ChatMessage::Assistant {
                content: text,
                tool_calls,
            });
        }
    }

    /// Prices the call, keeps its usage row (written with the turn) and tells the client.
    async fn record_usage(&mut self, usage: Usage) {
        let model = self.input.model.clone();
        let cost = self.deps.prices.cost(&model, usage).unwrap_or(0.0);
        self.totals.input_tokens += usage.input_tokens;
        self.totals.output_tokens += usage.output_tokens;
        self.totals.estimated_cost += cost;
        let record = UsageRecord {
            session_id: Some(self.input.session_id),
            provider: self.deps.llm.name().into(),
            model: model.clone(),
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cost_usd: cost,
        };
        self.usage.push(record);
        let data = UsageData {
            model,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            estimated_cost: cost,
            session_totals: self.totals.clone(),
        };
        self.send(ServerFrame::UsageFinal {
            data,
            session_id: self.input.session_id,
        })
        .await;
    }

    /// The org's credentials for this turn, fetched once.
    async fn grant(&mut self) -> Result<Arc<OrgGrant>, String> {
        if let Some(g) = &self.grant {
            return Ok(g.clone());
        }
        let g = self.deps.grants.for_org(self.input.who.org_id).await?;
        self.grant = Some(g.clone());
        Ok(g)
    }

    /// Which gate applies: a background run and ask mode only read.
    fn gate_mode(&self) -> GateMode {
        match (self.input.interactive, self.input.mode) {
            (false, _) => GateMode::Background,
            (true, Mode::Ask) => GateMode::Ask,
            (true, Mode::Agent) => GateMode::Agent,
        }
    }

    /// Runs one tool call through the gate; returns what the model is told.
    async fn tool(&mut self, call: &ToolCall) -> String {
        let sid = self.input.session_id;
        let raw: serde_json::Value = serde_json::from_str(&call.arguments)
            .unwrap_or_else(|_| json!({ "raw": call.arguments }));
        // The org's credentials for this call: handed to the tool, and masked by value in
        // everything shown or stored.
        let grant = match self.grant().await {
            Ok(g) => g,
            Err(e) => {
                let error = format!("the organization's credentials are unavailable: {e}");
                self.send(ToolErrorData::frame(call, sid, error.clone()))
                    .await;
                return error;
            }
        };
        let input = grant.secrets.redact_json(&raw);
        let tool_error = |error: String| ToolErrorData::frame(call, sid, error);
        let prepared = match self.prepare(call, &raw, &grant) {
            Ok(p) => p,
            Err(e) => {
                let error = grant.secrets.redact(&e.to_string());
                self.send(tool_error(error.clone())).await;
                return error;
            }
        };
        let Prepared {
            command,
            class,
            local_only,
            gated,
            job,
        } = prepared;
        let command = grant.secrets.redact(&command);
        let gate = if !gated {
            Gate {
                class: class.class,
                reason: class.reason,
                verdict: Verdict::Allowed,
            }
        } else {
            match self
                .deps
                .policies
                .check(self.input.who.org_id, &command, class, self.gate_mode())
                .await
            {
                Ok(mut g) => {
                    // Writing configuration into the session's own directory changes nothing
                    // outside it: agent mode needs no approval for it.
                    if local_only && matches!(g.verdict, Verdict::NeedsApproval { .. }) {
                        g.verdict = Verdict::Allowed;
                    }
                    g
                }
                Err(e) => {
                    let error = format!("the command policy could not be checked: {e}");
                    self.send(tool_error(error.clone())).await;
                    return error;
                }
            }
        };
        let running = |status: &str| ServerFrame::ToolCall {
            data: ToolCallData {
                tool_call_id: call.id.clone(),
                tool_name: call.name.clone(),
                input: input.clone(),
                status: status.into(),
                timestamp: Utc::now(),
            },
            session_id: sid,
        };
        let gate_details = json!({ "class": gate.class, "class_reason": gate.reason });
        match &gate.verdict {
            Verdict::Denied { reason } => {
                let mut details = gate_details.clone();
                details["reason"] = json!(reason);
                details["decision"] = json!("denied");
                self.audit("tool.denied", &command, details).await;
                let error = format!("not run: {reason}");
                if self.gate_mode() == GateMode::Ask && gate.class != Class::Forbidden {
                    let frame =
                        ServerFrame::error(ErrorCode::ReadOnlyMode, error.clone(), Some(sid));
                    self.send(frame).await;
                }
                self.send(tool_error(error.clone())).await;
                return error;
            }
            Verdict::NeedsApproval { reason } => {
                self.send(running("awaiting_confirmation")).await;
                if let Err(why) = self.approval(call, &command, reason, gate.class).await {
                    self.send(tool_error(why.clone())).await;
                    return why;
                }
            }
            Verdict::Allowed => {}
        }
        self.send(running("running")).await;
        let result = execute(&call.id, job, self.io.supervisor.clone()).await;
        let (status, content) = match &result {
            Ok(out) => (
                if out.exit_code == Some(0) {
                    "success"
                } else {
                    "error"
                },
                out.output.clone(),
            ),
            Err(e) => ("error", grant.secrets.redact(&e.to_string())),
        };
        crate::metrics::TOOL_CALLS
            .with_label_values(&[call.name.as_str(), status])
            .inc();
        let mut details = gate_details;
        details["decision"] = json!(match gate.verdict {
            Verdict::NeedsApproval { .. } => "approved",
            _ => "allowed",
        });
        details["status"] = json!(status);
        details["exit_code"] = json!(result.as_ref().ok().and_then(|o| o.exit_code));
        self.audit("tool.exec", &command, details).await;
        match result {
            Ok(_) => {
                let data = ToolResultData {
                    tool_call_id: call.id.clone(),
                    tool_name: call.name.clone(),
                    output: content.clone(),
                    status: status.into(),
                    timestamp: Utc::now(),
                };
                self.send(ServerFrame::ToolResult {
                    data,
                    session_id: sid,
                })
                .await;
            }
            Err(_) => self.send(tool_error(content.clone())).await,
        }
        content
    }

    /// Checks a call's arguments and turns it into the command the gate judges, its class, and
    /// the job that runs it with the org's credentials.
    fn prepare(
        &self,
        call: &ToolCall,
        input: &serde_json::Value,
        grant: &OrgGrant,
    ) -> Result<Prepared, ToolError> {
        let owner = Owner {
            org_id: self.input.who.org_id,
            user_id: self.input.who.user_id,
            session_id: self.input.session_id,
        };
        match call.name.as_str() {
            cloud_exec::NAME => {
                let argv = self.deps.cloud_exec.parse(input)?;
                let command = shell_words::join(&argv);
                let class = classify(&argv);
                let tool_call = grant.call_for(&argv[0]);
                let job: ToolJob = if argv[0] == terraform::NAME {
                    // Terraform keeps its state in object storage, whichever tool runs it.
                    let tf = self.deps.terraform.clone();
                    Box::new(move || {
                        Box::pin(async move { tf.run_cli(&owner, &argv, &tool_call).await })
                    })
                } else {
                    let exec = self.deps.cloud_exec.clone();
                    let (user, session) = (owner.user_id.to_string(), owner.session_id.to_string());
                    Box::new(move || {
                        Box::pin(
                            async move { exec.run_with(&user, &session, &argv, &tool_call).await },
                        )
                    })
                };
                Ok(Prepared {
                    command,
                    class,
                    local_only: false,
                    gated: true,
                    job,
                })
            }
            terraform::NAME => {
                let action = Terraform::parse(input)?;
                let tf = self.deps.terraform.clone();
                let tool_call = grant.call_for(terraform::NAME);
                let class = action.classification();
                Ok(Prepared {
                    command: action.command(),
                    class,
                    local_only: matches!(action, terraform::Action::Write(_)),
                    gated: true,
                    job: Box::new(move || {
                        Box::pin(async move { tf.run_granted(&owner, &action, &tool_call).await })
                    }),
                })
            }
            knowledge_search::NAME => {
                let kb = self.deps.knowledge.clone().ok_or_else(|| {
                    ToolError::InvalidArguments("this node has no knowledge base".into())
                })?;
                let (query, limit) = knowledge_search::parse(input)?;
                let org_id = owner.org_id;
                Ok(Prepared {
                    command: format!("{} {query:?}", knowledge_search::NAME),
                    class: Classification {
                        class: Class::Read,
                        reason: "searching the knowledge base only reads".into(),
                    },
                    local_only: false,
                    gated: false,
                    job: Box::new(move || {
                        Box::pin(knowledge_search::run(kb, org_id, query, limit))
                    }),
                })
            }
            incident_lookup::NAME => {
                let incidents = self.deps.incidents.clone().ok_or_else(|| {
                    ToolError::InvalidArguments("this node keeps no incidents".into())
                })?;
                let (id, limit) = incident_lookup::parse(input)?;
                let org_id = owner.org_id;
                Ok(Prepared {
                    command: match id {
                        Some(id) => format!("{} {id}", incident_lookup::NAME),
                        None => incident_lookup::NAME.to_string(),
                    },
                    class: Classification {
                        class: Class::Read,
                        reason: "looking up incidents only reads".into(),
                    },
                    local_only: false,
                    gated: false,
                    job: Box::new(move || {
                        Box::pin(incident_lookup::run(incidents, org_id, id, limit))
                    }),
                })
            }
            other => Err(ToolError::InvalidArguments(format!(
                "unknown tool '{other}'"
            ))),
        }
    }

    /// Asks the human and waits for `execute`, `cancel`, a turn cancel, or the timeout. An
    /// answer counts only from the session's user holding at least the editor role at the
    /// moment it arrives (looked up then, not taken from the ticket): a viewer's `execute` is
    /// refused and the question stays open.
    async fn approval(
        &mut self,
        call: &ToolCall,
        command: &str,
        reason: &str,
        class: Class,
    ) -> Result<(), String> {
        let confirmation_id = format!("confirm-{}", call.id);
        let data = ConfirmationData {
            confirmation_id: confirmation_id.clone(),
            tool_name: call.name.clone(),
            command: command.into(),
            message: format!("The agent wants to run `{command}`: {reason}. Run it?"),
            options: vec![Decision::Execute, Decision::Cancel],
            block_reason: reason.into(),
            classification: class,
            approver_role: Role::Editor,
        };
        self.send(ServerFrame::ExecutionConfirmation {
            data,
            session_id: self.input.session_id,
        })
        .await;
        let deadline = tokio::time::sleep(self.deps.approval_timeout);
        tokio::pin!(deadline);
        let mut cancel = self.io.cancel.clone();
        let decision = loop {
            let answer = tokio::select! {
                d = self.io.decisions.recv() => d,
                _ = &mut deadline => break None,
                _ = cancel.wait_for(|c| *c) => break Some(Decision::Cancel),
            };
            let Some((id, decision, approver)) = answer else {
                break None;
            };
            if id != confirmation_id {
                continue; // an answer to another, older confirmation
            }
            if decision == Decision::Execute {
                if let Err(why) = self.may_approve(approver).await {
                    self.audit(
                        "approval.refused",
                        command,
                        json!({ "approver": approver, "reason": why, "confirmation_id": confirmation_id }),
                    )
                    .await;
                    let frame =
                        ServerFrame::error(ErrorCode::Forbidden, why, Some(self.input.session_id));
                    self.send(frame).await;
                    continue;
                }
            }
            break Some(decision);
        };
        let outcome = match decision {
            Some(Decision::Execute) => "approved",
            Some(Decision::Cancel) => "declined",
            None => "timed out",
        };
        self.audit(
            "approval.decision",
            command,
            json!({ "decision": outcome, "confirmation_id": confirmation_id, "class": class }),
        )
        .await;
        match decision {
            Some(Decision::Execute) => Ok(()),
            Some(Decision::Cancel) => Err("declined by the user".into()),
            None => Err(format!(
                "no answer within {} s: not run",
                self.deps.approval_timeout.as_secs()
            )),
        }
    }

    /// Whether `approver` may approve now: the session's own user, still in the org, with at
    /// least the editor role.
    async fn may_approve(&self, approver: Uuid) -> Result<(), String> {
        let who = &self.input.who;
        if approver != who.user_id {
            return Err("only the session's user can approve its commands".into());
        }
        match self.deps.accounts.current_role(who.org_id, approver).await {
            Ok(Some(role)) if role >= Role::Editor => Ok(()),
            Ok(Some(_)) => Err("viewers cannot approve commands; an editor or admin must".into()),
            Ok(None) => Err("the approver is no longer a member of this organization".into()),
            Err(e) => Err(format!("the approver's role could not be checked: {e}")),
        }
    }

    async fn audit(&self, action: &str, command: &str, details: serde_json::Value) {
        let who = &self.input.who;
        let mut details = details;
        details["session_id"] = json!(self.input.session_id);
        if let Err(e) = self
            .deps
            .audit
            .log(
                who.org_id,
                Some(who.user_id),
                action,
                Some(command),
                details,
            )
            .await
        {
            tracing::error!(error = %e, action, "cannot write audit log");
        }
    }
}
