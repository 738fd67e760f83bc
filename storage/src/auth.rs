//! Accounts: organizations, users, passwords and API tokens.
//!
//! Passwords are hashed with argon2id (on the blocking pool: a hash costs tens of milliseconds).
//! API tokens are 256 random bits shown once; only their SHA-256 is stored, which is enough for
//! a secret of that entropy and lets every request be authenticated with one indexed lookup.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use tokio::sync::Semaphore;

use crate::cache::Cache;
use crate::entities::{api_tokens, organizations, users};
use crate::{audit, Db, StorageError};

/// A user's role in their org; each route names the least role it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            "admin" => Ok(Role::Admin),
            other => Err(StorageError::invalid(
                "role",
                format!("unknown role '{other}' (viewer, editor or admin)"),
            )),
        }
    }
}

/// The authenticated caller of a request.
// Deserialize: a forwarded chat message carries its caller to the node that owns the session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub role: Role,
}

/// A public view of a user row.
#[derive(Clone, Debug, Serialize)]
pub struct User {
    pub id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<users::Model> for User {
    type Error = StorageError;
    fn try_from(m: users::Model) -> Result<Self, Self::Error> {
        Ok(User {
            id: m.id,
            org_id: m.org_id,
            email: m.email,
            role: m.role.parse()?,
            created_at: m.created_at,
        })
    }
}

/// What a successful registration creates.
#[derive(Clone, Debug, Serialize)]
pub struct Registered {
    pub org: organizations::Model,
    pub user: User,
    pub token: IssuedToken,
}

/// A freshly issued API token: the only time the clear token exists outside the client.
#[derive(Clone, Debug, Serialize)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// Advisory lock taken while checking that no org exists yet (single-org mode); public for the
/// test that holds it to show a registration waits.
pub const SINGLE_ORG_LOCK_KEY: i64 = 0x6175_726f_7261_0001;

/// Resolved tokens by token hash, with the token's expiry.
type TokenCache = moka::sync::Cache<String, (Principal, DateTime<Utc>)>;

/// Account operations over the relational store.
#[derive(Clone)]
pub struct Accounts {
    pub(crate) db: Db,
    pub(crate) token_ttl: Duration,
    /// Every authenticated request resolves its token; caching the answer for a few seconds
    /// saves a database transaction per request. A revocation drops the cache on every node
    /// (`crate::tokens`); expiry itself is always checked.
    pub(crate) cache: Option<TokenCache>,
    /// Bumped by every revocation: a token resolved from the database before the bump is not
    /// cached after it, so a lookup racing a revocation cannot put the revoked token back.
    pub(crate) epoch: Arc<AtomicU64>,
    /// The shared cache whose stream carries revocations to the other nodes.
    pub(crate) revocations: Option<Cache>,
    /// At most this many password hashes at once (each argon2 hash holds 19 MiB).
    hashing: Arc<Semaphore>,
    /// `AURORA_HOST_CLOUD_CONFIG`: the deployment serves one org, so no second one is made.
    single_org: bool,
    /// Whether anyone may register a new org; when not, only the first user of a fresh
    /// install may (and becomes its admin).
    open_registration: bool,
}

/// How long a login waits for a hashing slot before the node says it is busy.
const HASH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("token_ttl", &self.token_ttl)
            .field("cache", &self.cache.is_some())
            .field("single_org", &self.single_org)
            .finish()
    }
}

impl Accounts {
    /// `auth_cache_secs` = 0 turns the token cache off.
    pub fn new(db: Db, token_ttl_hours: u32, auth_cache_secs: u64) -> Accounts {
        let cache = (auth_cache_secs > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(auth_cache_secs))
                .build()
        });
        Accounts {
            db,
            token_ttl: Duration::hours(i64::from(token_ttl_hours)),
            cache,
            epoch: Arc::new(AtomicU64::new(0)),
            revocations: None,
            hashing: Arc::new(Semaphore::new(default_hash_slots())),
            single_org: false,
            open_registration: true,
        }
    }

    /// Whether strangers may register new orgs (`AURORA_ALLOW_REGISTRATION`); closed, only the
    /// first user of a fresh install can.
    pub fn open_registration(mut self, open: bool) -> Accounts {
        self.open_registration = open;
        self
    }

    /// The cache shared by the cluster's nodes, whose stream carries revocations.
    pub fn shared_cache(mut self, cache: Cache) -> Accounts {
        self.revocations = Some(cache);
        self
    }

    /// At most `slots` password hashes at once on this node (at least one).
    pub fn hash_slots(mut self, slots: usize) -> Accounts {
        self.hashing = Arc::new(Semaphore::new(slots.max(1)));
        self
    }

    /// Refuses to create an org when one exists (`AURORA_HOST_CLOUD_CONFIG`: agent tools may
    /// use the host's own cloud configuration, which must never serve two orgs).
    pub fn single_org(mut self, on: bool) -> Accounts {
        self.single_org = on;
        self
    }

    /// How many organizations exist (the node's start-up check of `AURORA_HOST_CLOUD_CONFIG`).
    pub async fn organization_count(&self) -> Result<u64, StorageError> {
        use sea_orm::PaginatorTrait;
        let tx = self.db.system().await?;
        let n = organizations::Entity::find().count(tx.conn()).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// In single-org mode, refuses a new org once one exists. On PostgreSQL an advisory lock
    /// (held to the end of the transaction) makes two registrations racing for the first org
    /// take turns, so they cannot both see none.
    async fn check_new_org(&self, conn: &impl ConnectionTrait) -> Result<(), StorageError> {
        self.check_first_org(
            conn,
            self.single_org,
            "this deployment serves a single organization (AURORA_HOST_CLOUD_CONFIG is on)",
        )
        .await
    }

    /// Refuses a registration by a stranger when registration is closed: only while no org
    /// exists (the install's first user) may one be made this way.
    async fn check_registration(&self, conn: &impl ConnectionTrait) -> Result<(), StorageError> {
        self.check_first_org(
            conn,
            !self.open_registration,
            "registration is closed on this server: ask an admin of your organization for an invitation",
        )
        .await
        .map_err(|e| match e {
            StorageError::Conflict(m) => StorageError::Forbidden(m),
            other => other,
        })
    }

    async fn check_first_org(
        &self,
        conn: &impl ConnectionTrait,
        only_first: bool,
        refusal: &str,
    ) -> Result<(), StorageError> {
        use sea_orm::{DbBackend, PaginatorTrait, Statement};
        if !only_first {
            return Ok(());
        }
        if conn.get_database_backend() == DbBackend::Postgres {
            conn.execute_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT pg_advisory_xact_lock({SINGLE_ORG_LOCK_KEY})"),
            ))
            .await?;
        }
        if organizations::Entity::find().count(conn).await? > 0 {
            return Err(StorageError::Conflict(refusal.into()));
        }
        Ok(())
    }

    /// Creates an org with `email` as its first admin, and a token for them.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        org_name: &str,
    ) -> Result<Registered, StorageError> {
        let org_name = validate_name("org_name", org_name, 200)?;
        // Closed and taken: refused before any hashing (checked again, under the lock, below).
        if !self.open_registration && self.organization_count().await? > 0 {
            let tx = self.db.system().await?;
            self.check_registration(tx.conn()).await?;
        }
        let (email, hash) = self.new_credentials(email, password).await?;
        let tx = self.db.system().await?;
        self.check_registration(tx.conn()).await?;
        ensure_email_free(tx.conn(), &email).await?;
        self.check_new_org(tx.conn()).await?;
        let org = insert_org(tx.conn(), org_name).await?;
        let user = insert_user(tx.conn(), org.id, &email, hash, Role::Admin).await?;
        let token = insert_token(tx.conn(), &user, "login", self.token_ttl).await?;
        audit::record(
            tx.conn(),
            org.id,
            Some(user.id),
            "user.register",
            Some(&email),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(Registered {
            org,
            user: user.try_into()?,
            token,
        })
    }

    /// Checks a password and issues a new token. Unknown email and wrong password are
    /// indistinguishable, in answer and in time.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
    ) -> Result<(IssuedToken, Principal), StorageError> {
        let email = email.trim().to_lowercase();
        let tx = self.db.system().await?;
        let user = users::Entity::find()
            .filter(users::Column::Email.eq(&email))
            .filter(users::Column::RemovedAt.is_null())
            .filter(users::Column::Agent.eq(false))
            .one(tx.conn())
            .await?;
        tx.commit().await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let slot = self.hash_slot().await?;
        if !verify_password(password, stored, slot).await? {
            return Err(StorageError::InvalidCredentials);
        }
        let user = user.ok_or(StorageError::InvalidCredentials)?;
        let tx = self.db.system().await?;
        let token = insert_token(tx.conn(), &user, "login", self.token_ttl).await?;
        audit::record(
            tx.conn(),
            user.org_id,
            Some(user.id),
            "user.login",
            Some(&email),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        let principal = Principal {
            user_id: user.id,
            org_id: user.org_id,
            role: user.role.parse()?,
            email: user.email,
        };
        Ok((token, principal))
    }

    /// Resolves a bearer token to its user, refusing unknown and expired tokens.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, StorageError> {
        if token.is_empty() || token.len() > 256 {
            return Err(StorageError::Unauthorized("invalid token".into()));
        }
        self.authenticate_hash(&token_hash(token)).await
    }

    /// [`Accounts::authenticate`] by the token's SHA-256 (a WebSocket connection keeps only
    /// that, to check its token is still alive at each frame).
    pub async fn authenticate_hash(&self, hash: &str) -> Result<Principal, StorageError> {
        let hash = hash.to_string();
        let epoch = self.epoch.load(Ordering::SeqCst);
        if let Some((principal, expires_at)) = self.cache.as_ref().and_then(|c| c.get(&hash)) {
            if expires_at <= Utc::now() {
                return Err(StorageError::Unauthorized("token expired".into()));
            }
            return Ok(principal);
        }
        let stmt = Query::select()
            .column((users::Entity, users::Column::Id))
            .column((users::Entity, users::Column::OrgId))
            .column((users::Entity, users::Column::Email))
            .column((users::Entity, users::Column::Role))
            .column((api_tokens::Entity, api_tokens::Column::ExpiresAt))
            .from(api_tokens::Entity)
            .inner_join(
                users::Entity,
                Expr::col((users::Entity, users::Column::Id))
                    .equals((api_tokens::Entity, api_tokens::Column::UserId)),
            )
            .and_where(
                Expr::col((api_tokens::Entity, api_tokens::Column::TokenHash)).eq(hash.clone()),
            )
            .and_where(Expr::col((users::Entity, users::Column::RemovedAt)).is_null())
            .and_where(Expr::col((users::Entity, users::Column::Agent)).eq(false))
            .to_owned();
        let rows = self.db.system_query(&stmt).await?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| StorageError::Unauthorized("invalid token".into()))?;
        let expires_at: DateTime<Utc> = row.try_get("", "expires_at")?;
        if expires_at <= Utc::now() {
            return Err(StorageError::Unauthorized("token expired".into()));
        }
        let role: String = row.try_get("", "role")?;
        let principal = Principal {
            user_id: row.try_get("", "id")?,
            org_id: row.try_get("", "org_id")?,
            email: row.try_get("", "email")?,
            role: role.parse()?,
        };
        if let Some(cache) = &self.cache {
            if self.epoch.load(Ordering::SeqCst) == epoch {
                cache.insert(hash, (principal.clone(), expires_at));
            }
        }
        Ok(principal)
    }

    /// Adds a user to the caller's org (the edge checks the caller is an admin).
    pub async fn create_user(
        &self,
        by: &Principal,
        email: &str,
        password: &str,
        role: Role,
    ) -> Result<User, StorageError> {
        let (email, hash) = self.new_credentials(email, password).await?;
        let tx = self.db.org(by.org_id).await?;
        let user = admit_user(tx.conn(), by.org_id, &email, hash, role).await?;
        audit::record(
            tx.conn(),
            by.org_id,
            Some(by.user_id),
            "user.create",
            Some(&email),
            serde_json::json!({ "role": role }),
        )
        .await?;
        tx.commit().await?;
        user.try_into()
    }

    /// The users of `org_id`, oldest first.
    pub async fn list_users(&self, org_id: Uuid) -> Result<Vec<User>, StorageError> {
        let tx = self.db.org(org_id).await?;
        let rows = tx
            .select::<users::Entity>()
            .filter(users::Column::RemovedAt.is_null())
            .filter(users::Column::Agent.eq(false))
            .order_by_asc(users::Column::CreatedAt)
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        rows.into_iter().map(User::try_from).collect()
    }

    /// The user's role as the database says now (not as a token or ticket said when it was
    /// issued): approvals are judged by this, at the moment they are given. `None`: the user is
    /// gone from the org.
    pub async fn current_role(
        &self,
        org_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<Role>, StorageError> {
        let tx = self.db.org(org_id).await?;
        let row = tx
            .select::<users::Entity>()
            .filter(users::Column::Id.eq(user_id))
            .filter(users::Column::RemovedAt.is_null())
            .one(tx.conn())
            .await?;
        tx.commit().await?;
        row.map(|u| u.role.parse()).transpose()
    }

    pub async fn organization(&self, org_id: Uuid) -> Result<organizations::Model, StorageError> {
        let tx = self.db.org(org_id).await?;
        let org = tx.select::<organizations::Entity>().one(tx.conn()).await?;
        tx.commit().await?;
        org.ok_or(StorageError::NotFound("organization"))
    }

    /// Admin CLI: creates an org (by name, reusing an existing one of that name) and a user in it.
    pub async fn admin_create_user(
        &self,
        email: &str,
        password: &str,
        org_name: &str,
        role: Role,
    ) -> Result<User, StorageError> {
        let org_name = validate_name("org", org_name, 200)?;
        let (email, hash) = self.new_credentials(email, password).await?;
        let tx = self.db.system().await?;
        ensure_email_free(tx.conn(), &email).await?;
        let existing = organizations::Entity::find()
            .filter(organizations::Column::Name.eq(&org_name))
            .order_by_asc(organizations::Column::CreatedAt)
            .one(tx.conn())
            .await?;
        let org_id = match existing {
            Some(org) => org.id,
            None => {
                self.check_new_org(tx.conn()).await?;
                insert_org(tx.conn(), org_name).await?.id
            }
        };
        let user = insert_user(tx.conn(), org_id, &email, hash, role).await?;
        audit::record(
            tx.conn(),
            org_id,
            None,
            "user.create",
            Some(&email),
            serde_json::json!({ "role": role, "via": "cli" }),
        )
        .await?;
        tx.commit().await?;
        user.try_into()
    }

    /// Admin CLI: issues a token for an existing user.
    pub async fn admin_create_token(&self, email: &str) -> Result<IssuedToken, StorageError> {
        let email = email.trim().to_lowercase();
        let tx = self.db.system().await?;
        let user = users::Entity::find()
            .filter(users::Column::Email.eq(&email))
            .filter(users::Column::RemovedAt.is_null())
            .filter(users::Column::Agent.eq(false))
            .one(tx.conn())
            .await?
            .ok_or(StorageError::NotFound("user"))?;
        let token = insert_token(tx.conn(), &user, "cli", self.token_ttl).await?;
        audit::record(
            tx.conn(),
            user.org_id,
            Some(user.id),
            "token.create",
            Some(&email),
            serde_json::json!({ "via": "cli" }),
        )
        .await?;
        tx.commit().await?;
        Ok(token)
    }

    /// Issues a token that expires after `ttl` (tests use a negative one for an expired token).
    pub async fn issue_token(
        &self,
        principal: &Principal,
        name: &str,
        ttl: Duration,
    ) -> Result<IssuedToken, StorageError> {
        let tx = self.db.org(principal.org_id).await?;
        let user = tx
            .select::<users::Entity>()
            .filter(users::Column::Id.eq(principal.user_id))
            .filter(users::Column::RemovedAt.is_null())
            .one(tx.conn())
            .await?
            .ok_or(StorageError::NotFound("user"))?;
        let token = insert_token(tx.conn(), &user, name, ttl).await?;
        tx.commit().await?;
        Ok(token)
    }
}

impl Accounts {
    /// Validates a new user's email and password and hashes the password (under the bound on
    /// concurrent hashes).
    pub(crate) async fn new_credentials(
        &self,
        email: &str,
        password: &str,
    ) -> Result<(String, String), StorageError> {
        let email = normalize_email(email)?;
        validate_password(password)?;
        let slot = self.hash_slot().await?;
        Ok((email, hash_password(password, slot).await?))
    }

    /// A slot to hash a password in: a storm of logins queues here instead of each holding an
    /// argon2 hash's memory, and one that waits too long is told the node is busy.
    async fn hash_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, StorageError> {
        match tokio::time::timeout(HASH_WAIT, self.hashing.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(StorageError::Busy(
                "too many sign-ins at once on this node, try again shortly".into(),
            )),
        }
    }
}

/// Hashing slots when none are configured: one per core, at least two.
fn default_hash_slots() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

/// A fresh secret: 256 random bits, URL-safe, after a prefix that says what it is.
pub(crate) fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

async fn insert_org(
    conn: &impl ConnectionTrait,
    name: String,
) -> Result<organizations::Model, StorageError> {
    let org = organizations::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name),
        created_at: Set(Utc::now()),
    };
    Ok(organizations::Entity::insert(org)
        .exec_with_returning(conn)
        .await?)
}

pub(crate) async fn ensure_email_free(
    conn: &impl ConnectionTrait,
    email: &str,
) -> Result<(), StorageError> {
    let taken = users::Entity::find()
        .filter(users::Column::Email.eq(email))
        .one(conn)
        .await?;
    match taken {
        Some(_) => Err(StorageError::Conflict(
            "a user with this email already exists".into(),
        )),
        None => Ok(()),
    }
}

/// A user for `email` in `org_id`: a new row, or the org's own removed member of that address
/// brought back (their sessions and usage are theirs again; their old tokens stay gone). An
/// address in use anywhere else is a conflict.
pub(crate) async fn admit_user(
    conn: &impl ConnectionTrait,
    org_id: Uuid,
    email: &str,
    hash: String,
    role: Role,
) -> Result<users::Model, StorageError> {
    use sea_orm::sea_query::Expr;
    let existing = users::Entity::find()
        .filter(users::Column::Email.eq(email))
        .one(conn)
        .await?;
    match existing {
        None => insert_user(conn, org_id, email, hash, role).await,
        Some(u) if u.org_id == org_id && u.removed_at.is_some() => {
            users::Entity::update_many()
                .col_expr(
                    users::Column::RemovedAt,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .col_expr(users::Column::Role, Expr::value(role.as_str()))
                .col_expr(users::Column::PasswordHash, Expr::value(hash.clone()))
                .filter(users::Column::Id.eq(u.id))
                .exec(conn)
                .await?;
            Ok(users::Model {
                removed_at: None,
                role: role.as_str().to_string(),
                password_hash: hash,
                ..u
            })
        }
        Some(_) => Err(StorageError::Conflict(
            "a user with this email already exists".into(),
        )),
    }
}

pub(crate) async fn insert_user(
    conn: &impl ConnectionTrait,
    org_id: Uuid,
    email: &str,
    hash: String,
    role: Role,
) -> Result<users::Model, StorageError> {
    let user = users::ActiveModel {
        id: Set(Uuid::now_v7()),
        org_id: Set(org_id),
        email: Set(email.to_string()),
        password_hash: Set(hash),
        role: Set(role.as_str().to_string()),
        created_at: Set(Utc::now()),
        removed_at: Set(None),
        agent: Set(false),
    };
    users::Entity::insert(user)
        .exec_with_returning(conn)
        .await
        .map_err(|e| StorageError::from_db_conflict(e, "a user with this email already exists"))
}

pub(crate) async fn insert_token(
    conn: &impl ConnectionTrait,
    user: &users::Model,
    name: &str,
    ttl: Duration,
) -> Result<IssuedToken, StorageError> {
    let token = new_secret("aur_");
    let now = Utc::now();
    let expires_at = now + ttl;
    let row = api_tokens::ActiveModel {
        id: Set(Uuid::now_v7()),
        org_id: Set(user.org_id),
        user_id: Set(user.id),
        token_hash: Set(token_hash(&token)),
        name: Set(name.chars().take(100).collect()),
        created_at: Set(now),
        expires_at: Set(expires_at),
    };
    api_tokens::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    Ok(IssuedToken { token, expires_at })
}

/// SHA-256 of a token, hex encoded: what `api_tokens.token_hash` holds.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Lower-cases and checks an email address.
pub fn normalize_email(email: &str) -> Result<String, StorageError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(email.split_once('@'), Some((local, domain)) if !local.is_empty() && domain.contains('.') && !domain.contains('@') && !domain.starts_with('.') && !domain.ends_with('.'))
        // `.invalid` (RFC 2606) is never a person's: the orgs' agent accounts live there, and
        // an address taken first by a person would lock an org's agent out.
        && !email.ends_with(".invalid");
    if valid {
        Ok(email)
    } else {
        Err(StorageError::invalid(
            "email",
            "must be a valid email address of at most 254 characters",
        ))
    }
}

pub fn validate_password(password: &str) -> Result<(), StorageError> {
    let n = password.chars().count();
    if !(8..=256).contains(&n) {
        return Err(StorageError::invalid(
            "password",
            "must be 8 to 256 characters",
        ));
    }
    Ok(())
}

/// Trims a display name and checks its length and characters.
pub fn validate_name(field: &'static str, value: &str, max: usize) -> Result<String, StorageError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(StorageError::invalid(
            field,
            format!("must be 1 to {max} printable characters"),
        ));
    }
    Ok(value.to_string())
}

/// Hashes on the blocking pool; the slot is released when the hash is done, not when the
/// request is (a client that disconnects mid-request does not free it early).
async fn hash_password(
    password: &str,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<String, StorageError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| StorageError::Internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| StorageError::Internal(format!("password hashing task failed: {e}")))?
}

/// Verifies `password` against `stored`; with no stored hash it still spends the same work on a
/// fixed dummy hash so an unknown email cannot be told from a wrong password by timing.
async fn verify_password(
    password: &str,
    stored: Option<String>,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<bool, StorageError> {
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$kwz3wr2Ha3MZ1Sdd3ewWBqYpgz6bCZmsj6Mq0zHu7Ak";
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY.to_string());
        let parsed = PasswordHash::new(&stored)
            .map_err(|e| StorageError::Internal(format!("stored hash unreadable: {e}")))?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(known && ok)
    })
    .await
    .map_err(|e| StorageError::Internal(format!("password check task failed: {e}")))?
}
