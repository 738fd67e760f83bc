//! Long conversations (the seed's `chat.background.summarization`): when a session's context
//! passes a share of the model's window, its older turns are folded by the model into a
//! summary, kept in storage; the model then sees the summary and the recent turns. Nothing is
//! deleted from the history a user reads.
//!
//! A fold happens at the start of the turn that would pass the budget, so no model call ever
//! goes out over it, and it cuts only at a user message (where a turn began), so a tool call
//! and its result are never separated.

use aurora_models::context::{estimate_tokens, ContextWindows};
use aurora_models::llm::{ChatMessage, ChatRequest, LlmEvent, LlmProvider, Usage};
use aurora_storage::auth::Principal;
use aurora_storage::sessions::Sessions;
use futures::StreamExt;
use uuid::Uuid;

/// How a summary starts: what marks the one the model sees as the fold of earlier turns.
pub const SUMMARY_PREFIX: &str =
    "Summary of the earlier part of this conversation (older turns were folded to fit the model's context):\n";

const INSTRUCTIONS: &str = "You summarise the earlier part of an SRE's conversation with an \
infrastructure agent so the conversation can go on without it. Keep every fact the rest of the \
conversation may need: systems, services, resources and their names, commands that were run and \
what they showed, errors, findings, decisions, what the user asked for and what is still open. \
Drop pleasantries and repetition. Write plain prose and short lists, at most about 400 words.";

/// What a node's turns need to fold long conversations.
#[derive(Clone)]
pub struct Folding {
    pub windows: ContextWindows,
    /// Fold when the context would pass this share (percent) of the model's window.
    pub at_percent: u8,
    pub sessions: Sessions,
}

/// A fold that happened.
#[derive(Debug)]
pub struct Fold {
    /// The model's view after the fold: the system prompt, the summary, the recent turns.
    pub history: Vec<ChatMessage>,
    /// The summary call's token use (the turn records it like any model call).
    pub usage: Usage,
}

/// Where to cut `history` (system prompt first): the first user message from which the rest
/// fits in `keep` tokens; at least the last user message. `None` when nothing before it could
/// be folded.
fn cut(history: &[ChatMessage], keep: usize) -> Option<usize> {
    let users: Vec<usize> = history
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, m)| matches!(m, ChatMessage::User { .. }))
        .map(|(i, _)| i)
        .collect();
    let last = *users.last()?;
    let at = users
        .iter()
        .copied()
        .find(|&i| estimate_tokens(&history[i..]) <= keep)
        .unwrap_or(last);
    (at > 1).then_some(at)
}

/// The transcript the summary is made from.
fn transcript(messages: &[ChatMessage]) -> String {
    let mut out = String::new();
    for m in messages {
        let line = match m {
            ChatMessage::System { content } => match content.strip_prefix(SUMMARY_PREFIX) {
                Some(earlier) => format!("[summary of what came before]\n{earlier}"),
                None => continue,
            },
            ChatMessage::User { content } => format!("user: {content}"),
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                let mut s = format!("assistant: {content}");
                for c in tool_calls {
                    s.push_str(&format!("\n  [called {} with {}]", c.name, c.arguments));
                }
                s
            }
            ChatMessage::Tool { content, .. } => format!("tool result: {content}"),
        };
        out.push_str(&line);
        out.push_str("\n\n");
    }
    out
}

/// Folds `history` (the system prompt first, then the session's context) if it and `query`
/// would pass the budget of `model`: asks the model for the summary, stores it, and returns
/// the model's new view. `Ok(None)`: within budget, or nothing old enough to fold.
pub async fn fold_if_needed(
    folding: &Folding,
    llm: &dyn LlmProvider,
    who: &Principal,
    session_id: Uuid,
    model: &str,
    history: &[ChatMessage],
    query: &str,
) -> Result<Option<Fold>, String> {
    let window = folding.windows.tokens(model) as usize;
    let budget = window * usize::from(folding.at_percent) / 100;
    let asked = estimate_tokens(&[ChatMessage::User {
        content: query.to_string(),
    }]);
    if estimate_tokens(history) + asked <= budget {
        return Ok(None);
    }
    // Keep recent turns worth half the budget, so the next folds are some turns away.
    let keep = (budget / 2).saturating_sub(asked + estimate_tokens(&history[..1]));
    let Some(at) = cut(history, keep) else {
        return Ok(None);
    };
    let folded = &history[1..at];
    let request = ChatRequest {
        model: model.to_string(),
        messages: vec![
            ChatMessage::System {
                content: INSTRUCTIONS.into(),
            },
            ChatMessage::User {
                content: transcript(folded),
            },
        ],
        tools: std::sync::Arc::from(Vec::new()),
        max_tokens: Some(1024),
    };
    let mut stream = llm.stream(request).await.map_err(|e| e.to_string())?;
    let mut text = String::new();
    let mut usage = Usage::default();
    while let Some(event) = stream.next().await {
        match event.map_err(|e| e.to_string())? {
            LlmEvent::Text(t) => text.push_str(&t),
            LlmEvent::Done { usage: u, .. } => {
                usage = u.unwrap_or_default();
                break;
            }
            LlmEvent::ToolCall(_) => {}
        }
    }
    let text = text.trim();
    if text.is_empty() {
        return Err("the model returned an empty summary".into());
    }
    let summary = format!("{SUMMARY_PREFIX}{text}");
    // Context entries the stored skip moves past: the folded ones, less the previous summary
    // (it is no stored entry of its own).
    let had_summary = matches!(&history[1], ChatMessage::System { content } if content.starts_with(SUMMARY_PREFIX));
    let entries = folded.len() - usize::from(had_summary);
    folding
        .sessions
        .fold_context(who, session_id, &summary, entries)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(%session_id, folded = folded.len(), kept = history.len() - at, "conversation folded into a summary");
    let mut view = Vec::with_capacity(history.len() - at + 2);
    view.push(history[0].clone());
    view.push(ChatMessage::System { content: summary });
    view.extend(history[at..].iter().cloned());
    Ok(Some(Fold {
        history: view,
        usage,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> ChatMessage {
        ChatMessage::User { content: s.into() }
    }

    fn answer(s: &str) -> ChatMessage {
        ChatMessage::Assistant {
            content: s.into(),
            tool_calls: vec![],
        }
    }

    #[test]
    fn cuts_only_where_a_turn_begins() {
        let big = "x".repeat(300);
        let h = vec![
            ChatMessage::System {
                content: "sys".into(),
            },
            user(&big),
            answer(&big),
            user(&big),
            ChatMessage::Tool {
                tool_call_id: "c".into(),
                content: big.clone(),
            },
            user("short"),
            answer("short"),
        ];
        // Room for the last turn only.
        assert_eq!(cut(&h, 20), Some(5));
        // Room for the last two turns.
        assert_eq!(cut(&h, 250), Some(3));
        // Room for everything: nothing before the first user message to fold.
        assert_eq!(cut(&h, 10_000), None);
        // No user message: nothing to cut at.
        assert_eq!(cut(&h[..1], 0), None);
    }

    #[test]
    fn the_transcript_carries_the_earlier_summary_and_the_tool_calls() {
        let t = transcript(&[
            ChatMessage::System {
                content: format!("{SUMMARY_PREFIX}db was slow"),
            },
            user("why?"),
            ChatMessage::Assistant {
                content: "checking".into(),
                tool_calls: vec![aurora_models::llm::ToolCall {
                    id: "1".into(),
                    name: "cloud_exec".into(),
                    arguments: "{\"command\":\"kubectl get pods\"}".into(),
                }],
            },
        ]);
        assert!(t.contains("db was slow"));
        assert!(t.contains("kubectl get pods"));
        assert!(t.contains("user: why?"));
    }
}
