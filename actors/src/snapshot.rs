use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A small, serializable picture of one actor and its children, as the admin console shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActorSnapshot {
    /// What kind of actor this is (`node`, `health`, `session`, ...).
    pub kind: String,
    /// Its identity within its kind (a session id, a node name).
    pub id: String,
    /// A short state word (`running`, `idle`, `restarting`, ...).
    pub state: String,
    /// Messages waiting in its mailbox (see [`crate::Mailbox`]).
    pub mailbox: u32,
    /// How many times its supervisor has restarted it.
    pub restarts: u32,
    pub started_at: DateTime<Utc>,
    pub children: Vec<ActorSnapshot>,
}
