//! Supervision trees of a node.
//!
//! ractor has no restart policy of its own (its default supervisor handling stops the parent when
//! a child dies), so each supervisor here writes `handle_supervisor_evt` explicitly: it counts
//! restarts, respawns the child after an exponential [`Backoff`], and never lets one child's
//! failure stop its siblings.

mod backoff;
pub mod embeddings;
pub mod incidents;
pub mod ingest;
pub mod node;
pub mod placement;
pub mod scheduler;
pub mod sessions;

pub use backoff::Backoff;
pub use node::{Child, IngestHandle, NodeArgs, NodeMsg, NodeSupervisor, SessionsHandle};
pub use placement::Placement;
