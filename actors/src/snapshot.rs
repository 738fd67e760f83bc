use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
    /// Whose work this is, for actors that belong to one org (sessions, runs, ingestion): the
    /// admin console shows an org's admins only their own org's actors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<SnapshotOwner>,
    pub children: Vec<ActorSnapshot>,
}

/// The org (and user, where there is one) an actor works for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotOwner {
    pub org_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
}

impl ActorSnapshot {
    /// A snapshot with an empty mailbox, no restarts, no owner and no children: what most
    /// fill in, then override with struct-update syntax.
    pub fn new(kind: &str, id: impl Into<String>, state: &str, started_at: DateTime<Utc>) -> Self {
        ActorSnapshot {
            kind: kind.into(),
            id: id.into(),
            state: state.into(),
            mailbox: 0,
            restarts: 0,
            started_at,
            owner: None,
            children: Vec::new(),
        }
    }

    /// This actor and all below it, depth first.
    pub fn walk(&self) -> Vec<&ActorSnapshot> {
        let mut out = vec![self];
        for c in &self.children {
            out.extend(c.walk());
        }
        out
    }

    /// A copy without the subtrees owned by orgs other than `org_id` (actors that belong to no
    /// org stay); returns the copy and how many actors were left out.
    pub fn visible_to(&self, org_id: Uuid) -> (ActorSnapshot, usize) {
        let mut hidden = 0;
        let mut copy = self.clone();
        copy.children = self
            .children
            .iter()
            .filter_map(|c| match c.owner {
                Some(o) if o.org_id != org_id => {
                    hidden += c.walk().len();
                    None
                }
                _ => {
                    let (child, h) = c.visible_to(org_id);
                    hidden += h;
                    Some(child)
                }
            })
            .collect();
        (copy, hidden)
    }
}
