//! Delivery to this node's sessions supervisor: what the WebSocket edge used to do itself, now
//! shared by the edge (for sessions owned here) and the gateway (for messages forwarded here).

use aurora_actors::protocol::{ErrorCode, ServerFrame};
use aurora_actors::session::SessionMsg;
use aurora_storage::auth::Principal;
use aurora_supervisors::sessions::SessionsMsg;
use aurora_supervisors::SessionsHandle;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::wire::Forward;

/// Sends `msg` to the session on this node, attaching `frames` first: whatever a connection
/// sends for a session attaches it, so a client that reconnected receives the running turn's
/// frames from then on. Returns the error frame to answer with when it cannot be delivered.
pub(crate) fn deliver(
    sessions: &SessionsHandle,
    session_id: Uuid,
    who: &Principal,
    msg: Forward,
    frames: &mpsc::Sender<ServerFrame>,
) -> Result<(), Box<ServerFrame>> {
    let msg = match msg {
        Forward::Query { query, mode, model } => SessionMsg::Query {
            query,
            mode,
            model,
            interactive: true,
            frames: frames.clone(),
            role: Some(who.role),
        },
        Forward::Decision {
            confirmation_id,
            decision,
        } => SessionMsg::Decision {
            confirmation_id,
            decision,
            approver: who.user_id,
        },
        Forward::Cancel => SessionMsg::Cancel,
        Forward::Resume => SessionMsg::Resume {
            frames: Some(frames.clone()),
        },
    };
    let sessions = sessions.borrow().clone();
    let Some(sessions) = sessions else {
        return Err(Box::new(ServerFrame::error(
            ErrorCode::Internal,
            "the sessions supervisor is restarting; try again shortly",
            Some(session_id),
        )));
    };
    let _ = sessions.cast(SessionsMsg::Route {
        session_id,
        who: who.clone(),
        msg: SessionMsg::Attach(frames.clone()),
    });
    sessions
        .cast(SessionsMsg::Route {
            session_id,
            who: who.clone(),
            msg,
        })
        .map_err(|_| {
            Box::new(ServerFrame::error(
                ErrorCode::Internal,
                "the sessions supervisor is not running",
                Some(session_id),
            ))
        })
}

/// Nudges this node's correlator of `org_id` (nothing while the incidents supervisor restarts:
/// its first tick finds the waiting alerts).
pub(crate) fn correlate(incidents: &aurora_supervisors::incidents::IncidentsHandle, org_id: Uuid) {
    if let Some(s) = incidents.borrow().clone() {
        let _ = s.cast(aurora_supervisors::incidents::IncidentsMsg::Nudge(org_id));
    }
}
