//! Assembly of one Aurora node: configuration in, a running supervision tree and edges out.
//!
//! `main.rs` only calls [`cli::main`]; the integration tests start whole nodes in-process through
//! [`Node::start`].

pub mod alloc;
pub mod cli;
mod incidents;
mod node;
mod tools;

pub use node::{init_tracing, open_database, Node};
