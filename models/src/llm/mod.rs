//! LLM providers: one trait, streamed events, and the errors a caller can act on.

mod anthropic;
mod http;
mod openai;
mod sse;

use std::pin::Pin;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::Stream;
use serde::{Deserialize, Serialize};

pub use anthropic::AnthropicProvider;
pub use openai::OpenAiProvider;

/// One message of a conversation, in a provider-neutral shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessage {
    System {
        content: String,
    },
    User {
        content: String,
    },
    Assistant {
        content: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    /// The result of a tool call, fed back to the model.
    Tool {
        tool_call_id: String,
        content: String,
    },
}

/// A tool the model asked to run. `arguments` is the JSON text the model produced; the tool
/// layer parses and validates it against the tool's schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A tool offered to the model, with its JSON-schema parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// Shared: a node offers the same few tool sets in every request.
    pub tools: std::sync::Arc<[ToolSpec]>,
    pub max_tokens: Option<u32>,
}

/// Token counts as the provider reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    ToolCalls,
    Length,
    ContentFilter,
    Other(String),
}

/// What a streamed answer yields, in order: text deltas as they arrive, then every complete
/// tool call, then exactly one `Done`.
#[derive(Clone, Debug, PartialEq)]
pub enum LlmEvent {
    Text(String),
    ToolCall(ToolCall),
    Done {
        finish_reason: FinishReason,
        usage: Option<Usage>,
    },
}

pub type LlmStream = Pin<Box<dyn Stream<Item = Result<LlmEvent, LlmError>> + Send>>;

/// A chat model behind some API.
pub trait LlmProvider: Send + Sync {
    /// Short provider name for usage rows and logs (`openai`, `anthropic`).
    fn name(&self) -> &'static str;

    /// Starts one streamed completion. Errors before the first event (unreachable, refused,
    /// retries exhausted) come from the future; errors mid-stream come as stream items.
    fn stream(&self, request: ChatRequest) -> BoxFuture<'_, Result<LlmStream, LlmError>>;
}

/// Why a completion failed.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum LlmError {
    /// No provider configured, or no key where one is needed.
    #[error("llm provider not configured: {0}")]
    Unconfigured(String),
    /// Down, overloaded (after retries), timed out, or the stream broke off.
    #[error("llm provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the request (bad key, unknown model, invalid request).
    #[error("llm provider refused the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// The provider answered something that is not its protocol.
    #[error("llm provider protocol error: {0}")]
    Protocol(String),
}

/// The provider the configuration names (`LLM_PROVIDER`, `LLM_BASE_URL`, `LLM_API_KEY`), or
/// `Unconfigured` when there is none.
pub fn from_config(
    config: &aurora_config::Config,
    policy: HttpPolicy,
) -> Result<std::sync::Arc<dyn LlmProvider>, LlmError> {
    use aurora_config::LlmProvider as Kind;
    let kind = config
        .llm_provider
        .ok_or_else(|| LlmError::Unconfigured("set LLM_PROVIDER (openai or anthropic)".into()))?;
    let key = config.llm_api_key.as_ref().map(|k| k.expose().to_string());
    Ok(match kind {
        Kind::OpenAi => {
            let base = config
                .llm_base_url
                .clone()
                .unwrap_or_else(|| DEFAULT_OPENAI_URL.parse().expect("valid default URL"));
            std::sync::Arc::new(OpenAiProvider::new(&base, key, policy)?)
        }
        Kind::Anthropic => {
            let base = config
                .llm_base_url
                .clone()
                .unwrap_or_else(|| DEFAULT_ANTHROPIC_URL.parse().expect("valid default URL"));
            std::sync::Arc::new(AnthropicProvider::new(
                &base,
                key.unwrap_or_default(),
                policy,
            )?)
        }
    })
}

pub const DEFAULT_OPENAI_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_ANTHROPIC_URL: &str = "https://api.anthropic.com/v1";

/// Timeouts and retry policy shared by the HTTP providers.
#[derive(Clone, Debug)]
pub struct HttpPolicy {
    pub connect_timeout: Duration,
    /// From sending the request to the response headers.
    pub response_timeout: Duration,
    /// Longest silence between two stream chunks.
    pub idle_timeout: Duration,
    /// Retries after the first attempt, on connection errors, 429 and 5xx.
    pub max_retries: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        HttpPolicy {
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_retries: 3,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
        }
    }
}

impl HttpPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}
