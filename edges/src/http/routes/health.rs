//! `/health`, `/health/liveness`, `/health/readiness`: no authentication; answered from the
//! health monitor's last report, never by probing per request.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;
use warp::http::StatusCode;
use warp::Filter;

use super::{json, Route};
use crate::http::filters::with_state;
use crate::http::HttpState;

pub fn routes(state: Arc<HttpState>) -> Route {
    let health = warp::path!("health")
        .and(warp::get())
        .and(with_state(state.clone()))
        .map(|s: Arc<HttpState>| {
            let report = s.health.borrow().clone();
            let status = if report.is_ok() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(
                status,
                &json!({
                    "status": report.status,
                    "node": s.node_name,
                    "members": s.cluster.members(),
                    "version": env!("CARGO_PKG_VERSION"),
                    "uptime_s": s.started.elapsed().as_secs(),
                    "checked_at": report.checked_at,
                    "dependencies": report.dependencies,
                    "tool_sandbox": s.sandbox,
                }),
            )
        });
    let liveness = warp::path!("health" / "liveness")
        .and(warp::get())
        .map(|| json(StatusCode::OK, &json!({ "status": "alive" })));
    let readiness = warp::path!("health" / "readiness")
        .and(warp::get())
        .and(with_state(state))
        .map(|s: Arc<HttpState>| {
            if s.draining.load(Ordering::SeqCst) {
                return json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({ "status": "draining" }),
                );
            }
            let report = s.health.borrow();
            if report.is_ok() {
                json(StatusCode::OK, &json!({ "status": "ready" }))
            } else {
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({ "status": report.status }),
                )
            }
        });
    health.or(liveness).unify().or(readiness).unify().boxed()
}
