//! Inference for the node.
//!
//! - [`llm`]: the LLM provider trait (streamed answers and tool calls), the OpenAI-compatible
//!   chat-completions client (OpenAI, OpenRouter, Ollama, vLLM, llama.cpp server) and the
//!   Anthropic messages client.
//! - [`pricing`]: per-model prices for usage costs.
//! - [`embeddings`]: all-MiniLM-L6-v2 sentence embeddings run in process by candle.

pub mod context;
pub mod embeddings;
pub mod llm;
pub mod pricing;
