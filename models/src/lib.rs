//! Inference for the node.
//!
//! - [`llm`]: the LLM provider trait (streamed answers and tool calls) and the OpenAI-compatible
//!   chat-completions client, which covers OpenAI, OpenRouter, Ollama, vLLM and llama.cpp server.
//!   The Anthropic messages client joins it with the chat runtime.
//! - Sentence embeddings with all-MiniLM-L6-v2 run in process by candle-transformers come with
//!   the knowledge base.

pub mod llm;
pub mod pricing;
