//! What the nodes' gateways say to each other. Every gateway message carries these envelopes
//! as JSON bytes: ractor_cluster moves opaque bytes, and JSON keeps a decoding failure an
//! error we can log instead of a panic in the transport.

use aurora_actors::protocol::{Decision, Mode, ServerFrame};
use aurora_storage::auth::Principal;
use aurora_supervisors::sessions::{AdminAction, AdminRefusal};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a client asks of a session, as it travels to the session's owner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Forward {
    Query {
        query: String,
        mode: Mode,
        model: Option<String>,
    },
    Decision {
        confirmation_id: String,
        decision: Decision,
    },
    Cancel,
    /// Continue the session's turn, whose node died (the client waits for the rest).
    Resume,
}

/// Where frames for a forwarded message go back to: a connection on another node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConnAddr {
    pub node: String,
    pub conn: u64,
}

/// A one-way message between gateways.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Cast {
    /// Deliver to the local session (the receiver owns it), answering on `reply_to`.
    Route {
        session_id: Uuid,
        who: Principal,
        /// The ticket the client's edge redeemed for this connection: the receiving node
        /// checks `who` against it instead of taking the sender's word.
        ticket: String,
        msg: Forward,
        reply_to: ConnAddr,
    },
    /// Frames of sessions on the sender, for a connection on the receiver.
    Frames { conn: u64, frames: Vec<ServerFrame> },
    /// Alerts of the org wait for its correlator (the receiver owns the org).
    Correlate { org_id: Uuid },
}

/// A request that wants an answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Call {
    /// Liveness: any answer will do.
    Ping,
    /// The node's actor tree.
    Tree,
    /// An admin's action on a session, wherever it is live (sent to every node).
    Admin {
        session_id: Uuid,
        org_id: Uuid,
        action: AdminAction,
    },
}

/// The answer to a [`Call`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Answer {
    Pong,
    Tree(Box<aurora_actors::ActorSnapshot>),
    Admin(Result<(), AdminRefusal>),
    /// The receiver could not do it (its sessions supervisor is restarting, ...).
    Failed(String),
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // The envelopes hold nothing that can fail to serialize (no maps with non-string keys).
    serde_json::to_vec(value).unwrap_or_default()
}

pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}
