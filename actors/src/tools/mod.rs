//! Tools the agent can run. A tool is plain code with a JSON-schema spec; the
//! `ToolExecutionActor` of the chat runtime runs it with its timeout, output cap, redaction and
//! the approval gate.

pub mod cloud_exec;
pub mod grants;
pub mod incident_lookup;
pub mod knowledge_search;
mod output;
pub mod redact;
pub mod sandbox;
pub mod terraform;

pub use output::{OutputCap, ToolOutput};

/// Why a tool did not produce output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The arguments are wrong (unknown CLI, bad JSON, shell syntax): the model can fix them.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The program could not be started.
    #[error("cannot run {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("timed out after {0} s")]
    Timeout(u64),
    /// The tool's code failed (a panic): reported, and the turn goes on.
    #[error("{0}")]
    Crashed(String),
    /// Object storage (terraform state) could not be read or written.
    #[error("storage: {0}")]
    Storage(String),
}
