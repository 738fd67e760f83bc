//! WebSocket tickets: short-lived HS256 JWTs (audience `chatbot-ws`) that a client holding an
//! API token exchanges for one WebSocket connection. Each works once, on any node: its `jti` is
//! burned in the shared cache on first use.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Principal, Role};
use crate::cache::Cache;
use crate::StorageError;

pub const AUDIENCE: &str = "chatbot-ws";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    org: Uuid,
    email: String,
    role: Role,
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
    /// SHA-256 of the API token the ticket was bought with: the WebSocket edge holds the
    /// connection to that token (revoked, the connection ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tok: Option<String>,
}

/// A ticket as handed to the client.
#[derive(Clone, Debug, Serialize)]
pub struct Ticket {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Tickets {
    encoding: EncodingKey,
    decoding: DecodingKey,
    cache: Cache,
    ttl: Duration,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tickets").field("ttl", &self.ttl).finish()
    }
}

impl Tickets {
    /// `secret` signs and checks tickets: every node of a cluster must share it.
    pub fn new(secret: &[u8], cache: Cache, ttl: Duration) -> Tickets {
        Tickets {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            cache,
            ttl,
        }
    }

    /// A ticket bound to no API token (the WebSocket edge refuses those: see
    /// [`Tickets::issue_bound`]).
    pub fn issue(&self, who: &Principal) -> Result<Ticket, StorageError> {
        self.sign(who, None)
    }

    /// A ticket bound to the API token (by its SHA-256) it was bought with.
    pub fn issue_bound(&self, who: &Principal, token_hash: &str) -> Result<Ticket, StorageError> {
        self.sign(who, Some(token_hash.to_string()))
    }

    fn sign(&self, who: &Principal, tok: Option<String>) -> Result<Ticket, StorageError> {
        let now = Utc::now();
        let expires_at = now
            + chrono::Duration::from_std(self.ttl)
                .map_err(|e| StorageError::Internal(e.to_string()))?;
        let claims = Claims {
            sub: who.user_id,
            org: who.org_id,
            email: who.email.clone(),
            role: who.role,
            aud: AUDIENCE.into(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            jti: Uuid::new_v4().to_string(),
            tok,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| StorageError::Internal(format!("cannot sign ticket: {e}")))?;
        Ok(Ticket { token, expires_at })
    }

    /// The principal a ticket this cluster signed names, checked for signature and audience
    /// only: a node that receives a forwarded frame checks the ticket the client's edge
    /// redeemed (long since expired, and burned) against the principal the frame claims.
    pub fn vouch(&self, token: &str) -> Result<Principal, StorageError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["aud", "sub"]);
        let c = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| StorageError::Unauthorized("invalid ticket".into()))?
            .claims;
        Ok(Principal {
            user_id: c.sub,
            org_id: c.org,
            email: c.email,
            role: c.role,
        })
    }

    /// Checks signature, audience and expiry, then burns the ticket. A second redemption of the
    /// same ticket, on this node or another, is refused.
    pub async fn redeem(&self, token: &str) -> Result<Principal, StorageError> {
        Ok(self.redeem_bound(token).await?.0)
    }

    /// [`Tickets::redeem`], with the hash of the API token the ticket is bound to, if any.
    pub async fn redeem_bound(
        &self,
        token: &str,
    ) -> Result<(Principal, Option<String>), StorageError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|e| {
                let reason = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "ticket expired",
                    jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                        "ticket is not for this service"
                    }
                    _ => "invalid ticket",
                };
                StorageError::Unauthorized(reason.into())
            })?;
        let c = data.claims;
        // Keep the burn mark as long as the ticket could still validate, plus a margin.
        let left = (c.exp - Utc::now().timestamp()).max(0) as u64 + 5;
        if !self
            .cache
            .claim_once(
                &format!("aurora:ws-ticket:{}", c.jti),
                Duration::from_secs(left),
            )
            .await?
        {
            return Err(StorageError::Unauthorized("ticket already used".into()));
        }
        Ok((
            Principal {
                user_id: c.sub,
                org_id: c.org,
                email: c.email,
                role: c.role,
            },
            c.tok,
        ))
    }
}
