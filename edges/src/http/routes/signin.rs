//! Signing in: registration (closed by default), login and accepting an invitation. Each
//! attempt counts against a limit per client address and per account, cluster-wide in the
//! cache, before any password is hashed; unknown and wrong credentials get the same answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aurora_storage::cache::RateDecision;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use warp::http::StatusCode;
use warp::Filter;

use super::{json, Route};
use crate::http::filters::{json_body, with_state};
use crate::http::server::ClientAddr;
use crate::http::{respond, ApiError, HttpState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    email: String,
    password: String,
    org_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptBody {
    code: String,
    email: String,
    password: String,
}

pub fn routes(state: Arc<HttpState>) -> Route {
    let limit = state.config.max_body_bytes;
    let register = warp::path!("api" / "auth" / "register")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(client_addr())
        .and(json_body::<RegisterBody>(limit))
        .then(register)
        .map(respond);
    let login = warp::path!("api" / "auth" / "login")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(client_addr())
        .and(json_body::<LoginBody>(limit))
        .then(login)
        .map(respond);
    let accept = warp::path!("api" / "auth" / "accept-invitation")
        .and(warp::post())
        .and(with_state(state))
        .and(client_addr())
        .and(json_body::<AcceptBody>(limit))
        .then(accept)
        .map(respond);
    register.or(login).unify().or(accept).unify().boxed()
}

/// The client's address, as the server loop recorded it.
fn client_addr(
) -> impl Filter<Extract = (Option<SocketAddr>,), Error = std::convert::Infallible> + Clone {
    warp::ext::optional::<ClientAddr>().map(|a: Option<ClientAddr>| a.map(|a| a.0))
}

/// Counts one sign-in attempt for the client's address and for the account it names; refuses
/// with 429 and `Retry-After` when either is over its limit.
async fn count_attempt(
    s: &HttpState,
    addr: Option<SocketAddr>,
    email: &str,
) -> Result<(), ApiError> {
    let window = Duration::from_secs(s.config.signin_window_secs);
    let ip = addr.map_or_else(|| "unknown".to_string(), |a| address_key(a.ip()));
    // The account key is a hash: the cache never holds the addresses people typed.
    let account = hex::encode(Sha256::digest(email.trim().to_lowercase().as_bytes()));
    for (key, limit) in [
        (format!("aurora:signin:addr:{ip}"), s.config.signin_per_addr),
        (
            format!("aurora:signin:account:{account}"),
            s.config.signin_per_account,
        ),
    ] {
        match s.cache.rate_limit(&key, limit, window).await {
            Ok(RateDecision::Allowed { .. }) => {}
            Ok(RateDecision::Limited { retry_after }) => {
                return Err(ApiError::rate_limited(
                    "too many sign-in attempts; try again later",
                    retry_after,
                ))
            }
            Err(e) => {
                // Without the shared counter nothing bounds guessing: refuse rather than guess.
                tracing::warn!(error = %e, "sign-in rate limit unavailable");
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SERVICE_UNAVAILABLE",
                    "sign-in is unavailable, try again shortly",
                ));
            }
        }
    }
    Ok(())
}

async fn register(
    s: Arc<HttpState>,
    addr: Option<SocketAddr>,
    body: RegisterBody,
) -> Result<warp::reply::Response, ApiError> {
    count_attempt(&s, addr, &body.email).await?;
    let r = s
        .accounts
        .register(&body.email, &body.password, &body.org_name)
        .await?;
    tracing::info!(user_id = %r.user.id, org_id = %r.org.id, "registered");
    Ok(json(
        StatusCode::CREATED,
        &json!({ "user": r.user, "org": r.org, "token": r.token.token, "expires_at": r.token.expires_at }),
    ))
}

async fn login(
    s: Arc<HttpState>,
    addr: Option<SocketAddr>,
    body: LoginBody,
) -> Result<warp::reply::Response, ApiError> {
    count_attempt(&s, addr, &body.email).await?;
    let (token, p) = s.accounts.login(&body.email, &body.password).await?;
    Ok(json(
        StatusCode::OK,
        &json!({ "token": token.token, "expires_at": token.expires_at, "user": super::accounts::p_json(&p) }),
    ))
}

async fn accept(
    s: Arc<HttpState>,
    addr: Option<SocketAddr>,
    body: AcceptBody,
) -> Result<warp::reply::Response, ApiError> {
    count_attempt(&s, addr, &body.email).await?;
    let j = s
        .accounts
        .accept_invitation(&body.code, &body.email, &body.password)
        .await?;
    tracing::info!(user_id = %j.user.id, org_id = %j.org.id, role = j.user.role.as_str(), "joined by invitation");
    Ok(json(
        StatusCode::CREATED,
        &json!({ "user": j.user, "org": j.org, "token": j.token.token, "expires_at": j.token.expires_at }),
    ))
}

/// The address a sign-in counts against: an IPv4 address, or an IPv6 address's /64 (one host
/// is usually given a whole /64, and would otherwise have as many buckets as it likes).
fn address_key(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::address_key;

    #[test]
    fn ipv6_hosts_count_per_64() {
        let a = address_key("2001:db8:1:2::1".parse().unwrap());
        let b = address_key("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = address_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(address_key("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert_eq!(address_key("10.0.0.1".parse().unwrap()), "10.0.0.1");
    }
}
