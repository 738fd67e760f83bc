//! Inference for the node. Nothing is built here yet; this crate will hold:
//!
//! - the LLM provider trait (streaming answers and tool calls) with its two implementations,
//!   OpenAI-compatible chat completions and Anthropic messages (the chat runtime issue);
//! - sentence embeddings with all-MiniLM-L6-v2 run in process by candle-transformers, loaded
//!   through hf-hub's cache or a local directory (the knowledge base issue).
