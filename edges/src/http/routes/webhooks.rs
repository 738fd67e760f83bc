//! Alert intake and the webhook tokens it is guarded by.
//!
//! `POST /api/webhooks/{grafana|datadog|pagerduty|alertmanager|generic}/{token}`: the token in
//! the URL says whose alerts these are (an unknown or revoked token is a 404 that says nothing
//! about orgs); PagerDuty deliveries must also carry a valid `X-PagerDuty-Signature` made with
//! the token's signing secret, and a token with a secret takes nothing but those. The alerts are stored before the answer (202), then the org's
//! correlator is nudged, wherever in the cluster it runs.
//!
//! `/api/org/webhooks`: admins create (the token is shown once), list and revoke tokens.

use std::sync::Arc;

use aurora_actors::incidents::intake;
use aurora_storage::auth::{Principal, Role};
use aurora_storage::incidents::Source;
use aurora_storage::StorageError;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use warp::http::StatusCode;
use warp::Filter;

use super::{json, Route};
use crate::http::filters::{auth, id_param, json_body, raw_body, with_state};
use crate::http::{respond, ApiError, HttpState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    /// PagerDuty's signing secret of the subscription this token is for.
    #[serde(default)]
    signing_secret: Option<String>,
}

pub fn routes(state: Arc<HttpState>) -> Route {
    let limit = state.config.max_body_bytes;
    let deliver = warp::path!("api" / "webhooks" / String / String)
        .and(warp::post())
        .and(warp::header::optional::<String>("x-pagerduty-signature"))
        .and(with_state(state.clone()))
        .and(raw_body(limit))
        .then(deliver)
        .map(respond);
    let list = warp::path!("api" / "org" / "webhooks")
        .and(warp::get())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state.clone()))
        .then(list)
        .map(respond);
    let create = warp::path!("api" / "org" / "webhooks")
        .and(warp::post())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state.clone()))
        .and(json_body::<CreateBody>(limit))
        .then(create)
        .map(respond);
    let revoke = warp::path!("api" / "org" / "webhooks" / String)
        .and(warp::delete())
        .and(auth(state.clone(), Role::Admin))
        .and(with_state(state))
        .then(revoke)
        .map(respond);
    deliver
        .or(list)
        .unify()
        .or(create)
        .unify()
        .or(revoke)
        .unify()
        .boxed()
}

fn no_such_webhook() -> ApiError {
    ApiError::not_found("no such webhook")
}

async fn deliver(
    flavour: String,
    token: String,
    signature: Option<String>,
    s: Arc<HttpState>,
    body: Vec<u8>,
) -> Result<warp::reply::Response, ApiError> {
    let source = Source::webhook(&flavour).ok_or_else(no_such_webhook)?;
    let owner = s
        .webhooks
        .resolve(&token)
        .await?
        .ok_or_else(no_such_webhook)?;
    // A token with a signing secret was made for PagerDuty: it takes signed deliveries only,
    // or its signature check could be skipped by posting to another flavour's URL.
    if owner.signing_secret.is_some() && source != Source::Pagerduty {
        return Err(ApiError::unauthorized(
            "this webhook takes only signed PagerDuty deliveries",
        ));
    }
    if source == Source::Pagerduty {
        let Some(secret) = &owner.signing_secret else {
            return Err(ApiError::unauthorized(
                "this webhook has no PagerDuty signing secret; create one with signing_secret",
            ));
        };
        if !intake::verify_pagerduty(secret, &body, signature.as_deref()) {
            return Err(ApiError::unauthorized(
                "the X-PagerDuty-Signature header does not match the body",
            ));
        }
    }
    let received_at = Utc::now();
    let alerts = intake::parse(source, &body, received_at)
        .map_err(|e| ApiError::validation(e.to_string()))?;
    // Stored and announced to the correlator in a task of its own: a client that hangs up
    // while its delivery waits in the writer's queue cannot leave it stored but unannounced.
    let org_id = owner.org_id;
    let task = {
        let s = s.clone();
        tokio::spawn(async move {
            let stored = s
                .incidents
                .store_alerts(org_id, alerts, received_at)
                .await?;
            if stored.stored > 0 {
                s.cluster.correlate(org_id);
            }
            Ok::<_, StorageError>(stored)
        })
    };
    let stored = task
        .await
        .map_err(|e| StorageError::Internal(format!("the alert intake failed: {e}")))??;
    tracing::info!(
        org_id = %owner.org_id,
        webhook_id = %owner.token_id,
        source = source.as_str(),
        received = stored.received,
        stored = stored.stored,
        "alerts received"
    );
    Ok(json(
        StatusCode::ACCEPTED,
        &json!({ "received": stored.received, "stored": stored.stored }),
    ))
}

async fn list(p: Principal, s: Arc<HttpState>) -> Result<warp::reply::Response, ApiError> {
    let webhooks = s.webhooks.list(&p).await?;
    Ok(json(StatusCode::OK, &json!({ "webhooks": webhooks })))
}

async fn create(
    p: Principal,
    s: Arc<HttpState>,
    body: CreateBody,
) -> Result<warp::reply::Response, ApiError> {
    let w = s
        .webhooks
        .create(&p, &body.name, body.signing_secret.as_deref())
        .await?;
    tracing::info!(webhook_id = %w.info.id, "webhook token created");
    Ok(json(StatusCode::CREATED, &w))
}

async fn revoke(
    id: String,
    p: Principal,
    s: Arc<HttpState>,
) -> Result<warp::reply::Response, ApiError> {
    let id = id_param(&id, "webhook")?;
    s.webhooks.revoke(&p, id).await?;
    tracing::info!(webhook_id = %id, "webhook token revoked");
    Ok(json(StatusCode::OK, &json!({ "revoked": id })))
}
