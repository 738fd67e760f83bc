//! The WebSocket connections of this node, as the gateway sees them: frames that other nodes
//! send back for a connection are delivered here, and each connection's running turns are
//! remembered with their node until their END: decisions and cancels follow the turn there,
//! and a node dying mid-turn never leaves a client waiting.

use std::collections::HashMap;
use std::sync::Mutex;

use aurora_actors::protocol::{ErrorCode, ServerFrame};
use tokio::sync::mpsc;
use uuid::Uuid;

/// What the client of a turn lost with its node is told.
pub const TURN_LOST: &str =
    "the node running this turn stopped; the turn was lost (your history up to it is saved): ask again";

#[derive(Default)]
pub(crate) struct Conns {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    open: HashMap<u64, mpsc::Sender<ServerFrame>>,
    /// (connection, session) -> the node running that session's turn.
    in_flight: HashMap<(u64, Uuid), String>,
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
    pub(crate) fn started(&self, conn: u64, session_id: Uuid, node: &str) {
        self.lock()
            .in_flight
            .insert((conn, session_id), node.to_string());
    }

    /// The query recorded by [`Conns::started`] could not be sent after all, or its turn is
    /// over.
    pub(crate) fn settle(&self, conn: u64, session_id: Uuid) {
        self.lock().in_flight.remove(&(conn, session_id));
    }

    /// The node running the turn `conn` started in `session_id`, if one runs.
    pub(crate) fn running_on(&self, conn: u64, session_id: Uuid) -> Option<String> {
        self.lock().in_flight.get(&(conn, session_id)).cloned()
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

    /// Every turn run for a client here by a node that fails `alive` ends with an error.
    pub(crate) fn lost_unless(&self, alive: impl Fn(&str) -> bool) -> usize {
        let mut inner = self.lock();
        let lost: Vec<(u64, Uuid)> = inner
            .in_flight
            .iter()
            .filter(|(_, n)| !alive(n))
            .map(|(k, _)| *k)
            .collect();
        for (conn, session_id) in &lost {
            inner.in_flight.remove(&(*conn, *session_id));
            if let Some(tx) = inner.open.get(conn).cloned() {
                let session_id = *session_id;
                // Awaited in a task: these two must reach even a slow client.
                tokio::spawn(async move {
                    let lost = ServerFrame::error(ErrorCode::Internal, TURN_LOST, Some(session_id));
                    let _ = tx.send(lost).await;
                    let _ = tx.send(ServerFrame::end(session_id)).await;
                });
            }
        }
        lost.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lost_node_ends_its_turns_and_only_those() {
        let conns = Conns::default();
        let (tx, mut rx) = mpsc::channel(16);
        let conn = conns.open(tx);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        conns.started(conn, a, "node-b");
        conns.started(conn, b, "node-c");
        // b's turn ends normally.
        conns.deliver(conn, vec![ServerFrame::end(b)]);
        assert_eq!(rx.try_recv().unwrap(), ServerFrame::end(b));
        // A refused query settles too; SESSION_BUSY leaves the running turn in flight, and a
        // failed turn's error waits for its END.
        let c = Uuid::new_v4();
        conns.started(conn, c, "node-c");
        let busy = ServerFrame::error(ErrorCode::SessionBusy, "busy", Some(c));
        let failed = ServerFrame::error(ErrorCode::LlmUnavailable, "down", Some(c));
        conns.deliver(conn, vec![busy, failed]);
        assert_eq!(conns.in_flight(), 2);
        let gone = ServerFrame::error(ErrorCode::NotFound, "gone", Some(c));
        conns.deliver(conn, vec![gone]);
        assert_eq!(conns.in_flight(), 1);
        while rx.try_recv().is_ok() {}
        assert_eq!(conns.lost_unless(|n| n != "node-c"), 0);
        assert_eq!(conns.lost_unless(|n| n != "node-b"), 1);
        assert!(
            matches!(rx.recv().await.unwrap(), ServerFrame::Error { data, session_id } if data.code == ErrorCode::Internal && session_id == Some(a))
        );
        assert_eq!(rx.recv().await.unwrap(), ServerFrame::end(a));
        assert_eq!(conns.lost_unless(|n| n != "node-b"), 0, "told once");
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
        conns.started(conn, a, "node-b");
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
