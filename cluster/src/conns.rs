//! The WebSocket connections of this node, as the gateway sees them: frames that other nodes
//! send back for a connection are delivered here, and each connection's running turns are
//! remembered with their node until their END: decisions and cancels follow the turn there,
//! and a turn whose node dies is continued by the session's new owner, streaming to the same
//! client (or, when it cannot be, the client is told and never left waiting).

use std::collections::HashMap;
use std::sync::Mutex;

use aurora_actors::protocol::{ErrorCode, ServerFrame};
use aurora_storage::auth::Principal;
use tokio::sync::mpsc;
use uuid::Uuid;

/// What the client of a turn lost with its node is told when it cannot be continued.
pub const TURN_LOST: &str =
    "the node running this turn stopped; the turn was lost (your history up to it is saved): ask again";

/// A turn a client here waits for.
#[derive(Clone, Debug)]
pub(crate) struct Flight {
    /// The node running it.
    pub node: String,
    /// Who asked, and the ticket their connection was opened with: what a continuation on
    /// another node is sent with.
    pub who: Principal,
    pub ticket: String,
}

/// A turn whose node died, to be continued elsewhere for its client.
#[derive(Debug)]
pub(crate) struct Orphan {
    pub conn: u64,
    pub session_id: Uuid,
    pub who: Principal,
    pub ticket: String,
    pub frames: mpsc::Sender<ServerFrame>,
}

#[derive(Default)]
pub(crate) struct Conns {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    open: HashMap<u64, mpsc::Sender<ServerFrame>>,
    /// (connection, session) -> the turn running in that session.
    in_flight: HashMap<(u64, Uuid), Flight>,
}

impl Conns {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; a poisoned one still holds consistent maps.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection under a random id: ids travel to other nodes with forwarded
    /// messages, and one that a restarted node reused could receive frames meant for a
    /// connection that died with the node before it.
    pub(crate) fn open(&self, frames: mpsc::Sender<ServerFrame>) -> u64 {
        let mut inner = self.lock();
        loop {
            let id = Uuid::new_v4().as_u64_pair().0;
            if let std::collections::hash_map::Entry::Vacant(slot) = inner.open.entry(id) {
                slot.insert(frames);
                return id;
            }
        }
    }

    pub(crate) fn close(&self, conn: u64) {
        let mut inner = self.lock();
        inner.open.remove(&conn);
        inner.in_flight.retain(|(c, _), _| *c != conn);
    }

    /// A query of `conn` for `session_id` goes to `node` (called before it is sent, so that
    /// its END cannot arrive first).
    pub(crate) fn started(
        &self,
        conn: u64,
        session_id: Uuid,
        node: &str,
        who: &Principal,
        ticket: &str,
    ) {
        self.lock().in_flight.insert(
            (conn, session_id),
            Flight {
                node: node.to_string(),
                who: who.clone(),
                ticket: ticket.to_string(),
            },
        );
    }

    /// The turn of `conn` in `session_id` is continued on `node` now.
    pub(crate) fn moved(&self, conn: u64, session_id: Uuid, node: &str) {
        if let Some(flight) = self.lock().in_flight.get_mut(&(conn, session_id)) {
            flight.node = node.to_string();
        }
    }

    /// The query recorded by [`Conns::started`] could not be sent after all, or its turn is
    /// over.
    pub(crate) fn settle(&self, conn: u64, session_id: Uuid) {
        self.lock().in_flight.remove(&(conn, session_id));
    }

    /// The node running the turn `conn` started in `session_id`, if one runs.
    pub(crate) fn running_on(&self, conn: u64, session_id: Uuid) -> Option<String> {
        self.lock()
            .in_flight
            .get(&(conn, session_id))
            .map(|f| f.node.clone())
    }

    /// Frames from another node for `conn`. A client too slow to take them loses frames, not
    /// the node's gateway: the turn itself is saved whatever the client saw.
    pub(crate) fn deliver(&self, conn: u64, frames: Vec<ServerFrame>) {
        let mut inner = self.lock();
        let Some(tx) = inner.open.get(&conn).cloned() else {
            return;
        };
        for frame in frames {
            if let Some(session_id) = frame.settles() {
                inner.in_flight.remove(&(conn, session_id));
            }
            let settles = frame.settles().is_some();
            match tx.try_send(frame) {
                Ok(()) => {}
                // The frame that ends a turn is never dropped: the client (and a draining node)
                // waits for it.
                Err(mpsc::error::TrySendError::Full(frame)) if settles => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(frame).await;
                    });
                }
                Err(_) => tracing::warn!(conn, "client too slow: a relayed frame was dropped"),
            }
        }
    }

    /// Turns that clients here wait for (on any node).
    pub(crate) fn in_flight(&self) -> usize {
        self.lock().in_flight.len()
    }

    /// The turns run for clients here by nodes that fail `alive`, to be continued elsewhere
    /// (they stay in flight: the caller records where each goes, or [`Conns::lose`]s it).
    pub(crate) fn orphaned(&self, alive: impl Fn(&str) -> bool) -> Vec<Orphan> {
        let inner = self.lock();
        inner
            .in_flight
            .iter()
            .filter(|(_, f)| !alive(&f.node))
            .filter_map(|((conn, session_id), f)| {
                Some(Orphan {
                    conn: *conn,
                    session_id: *session_id,
                    who: f.who.clone(),
                    ticket: f.ticket.clone(),
                    frames: inner.open.get(conn)?.clone(),
                })
            })
            .collect()
    }

    /// A turn that cannot be continued ends for its client with an error.
    pub(crate) fn lose(&self, conn: u64, session_id: Uuid) {
        let mut inner = self.lock();
        if inner.in_flight.remove(&(conn, session_id)).is_none() {
            return;
        }
        if let Some(tx) = inner.open.get(&conn).cloned() {
            // Awaited in a task: these two must reach even a slow client.
            tokio::spawn(async move {
                let lost = ServerFrame::error(ErrorCode::Internal, TURN_LOST, Some(session_id));
                let _ = tx.send(lost).await;
                let _ = tx.send(ServerFrame::end(session_id)).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Principal {
        Principal {
            user_id: Uuid::new_v4(),
            org_id: Uuid::new_v4(),
            email: "a@b.test".into(),
            role: aurora_storage::auth::Role::Editor,
        }
    }

    #[tokio::test]
    async fn a_lost_node_orphans_its_turns_and_only_those() {
        let conns = Conns::default();
        let (tx, mut rx) = mpsc::channel(16);
        let conn = conns.open(tx);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        conns.started(conn, a, "node-b", &who(), "t");
        conns.started(conn, b, "node-c", &who(), "t");
        // b's turn ends normally.
        conns.deliver(conn, vec![ServerFrame::end(b)]);
        assert_eq!(rx.try_recv().unwrap(), ServerFrame::end(b));
        // A refused query settles too; SESSION_BUSY leaves the running turn in flight, and a
        // failed turn's error waits for its END.
        let c = Uuid::new_v4();
        conns.started(conn, c, "node-c", &who(), "t");
        let busy = ServerFrame::error(ErrorCode::SessionBusy, "busy", Some(c));
        let failed = ServerFrame::error(ErrorCode::LlmUnavailable, "down", Some(c));
        conns.deliver(conn, vec![busy, failed]);
        assert_eq!(conns.in_flight(), 2);
        let gone = ServerFrame::error(ErrorCode::NotFound, "gone", Some(c));
        conns.deliver(conn, vec![gone]);
        assert_eq!(conns.in_flight(), 1);
        while rx.try_recv().is_ok() {}
        assert!(conns.orphaned(|n| n != "node-c").is_empty());
        let orphans = conns.orphaned(|n| n != "node-b");
        assert_eq!(orphans.len(), 1);
        assert_eq!((orphans[0].conn, orphans[0].session_id), (conn, a));
        assert_eq!(orphans[0].ticket, "t");
        // Continued on node-c: no longer an orphan of node-b, and decisions follow it there.
        conns.moved(conn, a, "node-c");
        assert!(conns.orphaned(|n| n != "node-b").is_empty());
        assert_eq!(conns.running_on(conn, a).as_deref(), Some("node-c"));
        // One that cannot be continued ends with an error, once.
        conns.lose(conn, a);
        assert!(
            matches!(rx.recv().await.unwrap(), ServerFrame::Error { data, session_id } if data.code == ErrorCode::Internal && session_id == Some(a))
        );
        assert_eq!(rx.recv().await.unwrap(), ServerFrame::end(a));
        conns.lose(conn, a);
        assert_eq!(conns.in_flight(), 0, "told once");
        conns.close(conn);
        conns.deliver(conn, vec![ServerFrame::end(a)]);
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn an_end_reaches_even_a_full_connection() {
        let conns = Conns::default();
        let (tx, mut rx) = mpsc::channel(1);
        let conn = conns.open(tx);
        let a = Uuid::new_v4();
        conns.started(conn, a, "node-b", &who(), "t");
        let chunk = ServerFrame::error(ErrorCode::Internal, "filler", None);
        conns.deliver(conn, vec![chunk.clone(), chunk, ServerFrame::end(a)]);
        assert_eq!(conns.in_flight(), 0);
        let mut got = Vec::new();
        while let Ok(Some(f)) =
            tokio::time::timeout(std::time::Duration::from_millis(200), rx.recv()).await
        {
            got.push(f);
        }
        assert_eq!(
            got.len(),
            2,
            "the filler that did not fit is dropped: {got:?}"
        );
        assert_eq!(got.last(), Some(&ServerFrame::end(a)));
    }
}
