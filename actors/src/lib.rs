//! The node's actors, one file per actor holding its arguments, state and message enum.
//!
//! Every actor answers a status request with an [`ActorSnapshot`], which the supervisors assemble
//! into the node's actor tree for the admin API.

pub mod agent_run;
pub mod embedding_worker;
pub mod health;
pub mod incidents;
pub mod kb_ingest;
pub mod knowledge;
pub mod mailbox;
pub mod metrics;
pub mod protocol;
pub mod session;
mod snapshot;
pub mod summary;
pub mod tool_execution;
pub mod tools;
pub mod turn;

pub use health::{DependencyStatus, HealthActor, HealthArgs, HealthMsg, HealthReport};
pub use mailbox::{Counted, Mailbox};
pub use snapshot::{ActorSnapshot, SnapshotOwner};
