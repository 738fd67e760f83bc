//! Storage of an Aurora node.
//!
//! - [`Db`]: the relational store on PostgreSQL (row-level security per org) or SQLite (the
//!   embedded default), with sea-orm entities and migrations in one code path for both.
//! - [`auth::Accounts`], [`preferences::Preferences`], [`sessions::Sessions`]: the repository layer
//!   the edges call. Each opens an org-scoped or system transaction; none takes raw connections.
//! - [`redis::RedisPool`]: the cache's server backend.
//! - [`secrets::SecretStore`]: the orgs' credentials (Vault KV v2 or a sealed file);
//!   [`credentials::Credentials`] keeps only references to them in the database.

pub mod audit;
pub mod auth;
pub mod cache;
pub mod classify;
mod contexts;
pub mod credentials;
mod db;
pub mod entities;
mod error;
pub mod incidents;
pub mod knowledge;
pub mod members;
pub mod migration;
pub mod objects;
pub mod policies;
pub mod preferences;
pub mod redis;
pub mod scheduler;
pub mod secrets;
pub mod sessions;
pub mod tickets;
pub mod time;
pub mod tokens;
pub mod turns;
pub mod usage;

/// The batched context read's statement, for the test that checks PostgreSQL's plan for it.
#[doc(hidden)]
pub use contexts::query as context_query;
pub use db::{org_select, Db, OrgTx, SystemTx};
pub use error::StorageError;
