//! How much a model can read: a per-model context window in tokens, with defaults for common
//! models and overrides from configuration (`AURORA_LLM_CONTEXT_TOKENS`), and an estimate of
//! what a conversation costs in tokens, for deciding when older turns are folded into a
//! summary.

use std::collections::HashMap;

use crate::llm::ChatMessage;

/// Window of a model the table does not know.
pub const DEFAULT_WINDOW: u32 = 128_000;

/// Context windows at the time of writing; configuration overrides or extends them.
const DEFAULTS: &[(&str, u32)] = &[
    ("gpt-4o", 128_000),
    ("gpt-4o-mini", 128_000),
    ("gpt-4.1", 1_047_576),
    ("gpt-4.1-mini", 1_047_576),
    ("o3-mini", 200_000),
    ("claude-sonnet-4", 200_000),
    ("claude-3-7-sonnet", 200_000),
    ("claude-3-5-haiku", 200_000),
    ("claude-opus-4", 200_000),
];

#[derive(Clone, Debug)]
pub struct ContextWindows {
    windows: HashMap<String, u32>,
}

impl Default for ContextWindows {
    fn default() -> Self {
        ContextWindows {
            windows: DEFAULTS.iter().map(|(m, t)| (m.to_string(), *t)).collect(),
        }
    }
}

impl ContextWindows {
    /// The defaults plus `spec`: `model=tokens` pairs separated by commas, e.g.
    /// `gpt-4o=128000,llama3=8192`.
    pub fn with_overrides(spec: &str) -> Result<ContextWindows, String> {
        let mut table = ContextWindows::default();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (model, tokens) = entry
                .split_once('=')
                .ok_or_else(|| format!("'{entry}' is not model=tokens"))?;
            let tokens = tokens
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|t| *t >= 100)
                .ok_or_else(|| {
                    format!("'{entry}': tokens must be a whole number of at least 100")
                })?;
            table.windows.insert(model.trim().to_string(), tokens);
        }
        Ok(table)
    }

    /// The window of `model`: an exact entry, else the longest entry the name starts with
    /// (dated releases, provider prefixes aside), else [`DEFAULT_WINDOW`].
    pub fn tokens(&self, model: &str) -> u32 {
        let name = model.rsplit('/').next().unwrap_or(model);
        self.windows.get(name).copied().unwrap_or_else(|| {
            self.windows
                .iter()
                .filter(|(m, _)| name.starts_with(m.as_str()))
                .max_by_key(|(m, _)| m.len())
                .map_or(DEFAULT_WINDOW, |(_, t)| *t)
        })
    }
}

/// Tokens `messages` take, estimated high: a character count over three (English runs near
/// four characters a token in every provider's tokenizer; code, JSON and other scripts run
/// denser), plus a few per message for the roles and separators. An estimate rather than a
/// tokenizer: the providers' tokenizers differ, some are not published, and the only use is
/// deciding early enough when to fold old turns away.
pub fn estimate_tokens(messages: &[ChatMessage]) -> usize {
    messages.iter().map(message_tokens).sum()
}

fn message_tokens(m: &ChatMessage) -> usize {
    let chars = match m {
        ChatMessage::System { content } | ChatMessage::User { content } => content.chars().count(),
        ChatMessage::Assistant {
            content,
            tool_calls,
        } => {
            content.chars().count()
                + tool_calls
                    .iter()
                    .map(|c| c.name.len() + c.arguments.chars().count() + c.id.len())
                    .sum::<usize>()
        }
        ChatMessage::Tool {
            tool_call_id,
            content,
        } => tool_call_id.len() + content.chars().count(),
    };
    chars.div_ceil(3) + 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_by_name_prefix_and_override() {
        let t = ContextWindows::with_overrides("gpt-4o=5000, local-llama=8192").unwrap();
        assert_eq!(t.tokens("gpt-4o"), 5000);
        assert_eq!(t.tokens("gpt-4o-2024-08-06"), 5000);
        assert_eq!(t.tokens("gpt-4o-mini"), 128_000);
        assert_eq!(t.tokens("openrouter/local-llama"), 8192);
        assert_eq!(t.tokens("claude-sonnet-4-20250514"), 200_000);
        assert_eq!(t.tokens("unknown"), DEFAULT_WINDOW);
        for bad in ["gpt-4o", "gpt-4o=many", "gpt-4o=10", "=5"] {
            assert!(ContextWindows::with_overrides(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn estimates_grow_with_the_text() {
        let short = [ChatMessage::User {
            content: "hi".into(),
        }];
        let long = [ChatMessage::User {
            content: "x".repeat(3000),
        }];
        assert_eq!(estimate_tokens(&short), 5);
        assert_eq!(estimate_tokens(&long), 1004);
    }
}
