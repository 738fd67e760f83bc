//! Members an admin controls: invitations (single use, expiring, role chosen), role changes and
//! removal. Every change that alters what a token may do invalidates the token caches of every
//! node ([`crate::auth::Accounts::invalidate`]), so it holds within a second cluster-wide.

use chrono::{Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::{
    admit_user, insert_token, new_secret, token_hash, Accounts, IssuedToken, Principal, Role, User,
};
use crate::db::lock_org;
use crate::entities::{api_tokens, invitations, organizations, users};
use crate::{audit, StorageError};

/// The longest an invitation may stay open.
pub const MAX_INVITATION_HOURS: i64 = 24 * 30;
/// Open invitations an org may have at once (none can hide among thousands).
pub const MAX_OPEN_INVITATIONS: u64 = 200;

/// A new invitation: the only time its code exists outside the invitee's hands.
#[derive(Clone, Debug, Serialize)]
pub struct IssuedInvitation {
    #[serde(flatten)]
    pub invitation: invitations::Model,
    pub code: String,
}

/// What accepting an invitation creates.
#[derive(Clone, Debug, Serialize)]
pub struct Joined {
    pub org: organizations::Model,
    pub user: User,
    pub token: IssuedToken,
}

/// The one answer for a code that is unknown, used, revoked or expired: nothing tells a guesser
/// which.
fn invalid_invitation() -> StorageError {
    StorageError::Unauthorized("invalid or expired invitation".into())
}

impl Accounts {
    /// Issues an invitation into `by`'s org (the edge checks `by` is an admin).
    pub async fn invite(
        &self,
        by: &Principal,
        role: Role,
        email: Option<&str>,
        ttl_hours: i64,
    ) -> Result<IssuedInvitation, StorageError> {
        if !(1..=MAX_INVITATION_HOURS).contains(&ttl_hours) {
            return Err(StorageError::invalid(
                "expires_in_hours",
                format!("must be between 1 and {MAX_INVITATION_HOURS}"),
            ));
        }
        let email = email.map(crate::auth::normalize_email).transpose()?;
        let code = new_secret("inv_");
        let open = {
            let tx = self.db.org(by.org_id).await?;
            let n = tx
                .select::<invitations::Entity>()
                .filter(invitations::Column::AcceptedAt.is_null())
                .filter(invitations::Column::ExpiresAt.gt(Utc::now()))
                .count(tx.conn())
                .await?;
            tx.commit().await?;
            n
        };
        if open >= MAX_OPEN_INVITATIONS {
            return Err(StorageError::Conflict(format!(
                "at most {MAX_OPEN_INVITATIONS} open invitations: revoke some first"
            )));
        }
        let now = Utc::now();
        let row = invitations::ActiveModel {
            id: Set(Uuid::now_v7()),
            org_id: Set(by.org_id),
            code_hash: Set(token_hash(&code)),
            role: Set(role.as_str().to_string()),
            email: Set(email.clone()),
            created_by: Set(Some(by.user_id)),
            created_at: Set(now),
            expires_at: Set(now + Duration::hours(ttl_hours)),
            accepted_at: Set(None),
            accepted_by: Set(None),
        };
        let tx = self.db.org(by.org_id).await?;
        let invitation = invitations::Entity::insert(row)
            .exec_with_returning(tx.conn())
            .await?;
        audit::record(
            tx.conn(),
            by.org_id,
            Some(by.user_id),
            "invitation.create",
            email.as_deref(),
            serde_json::json!({ "role": role, "invitation_id": invitation.id }),
        )
        .await?;
        tx.commit().await?;
        Ok(IssuedInvitation { invitation, code })
    }

    /// The org's invitations, newest first (codes are never shown again).
    pub async fn list_invitations(
        &self,
        org_id: Uuid,
    ) -> Result<Vec<invitations::Model>, StorageError> {
        let tx = self.db.org(org_id).await?;
        let rows = tx
            .select::<invitations::Entity>()
            .order_by_desc(invitations::Column::CreatedAt)
            .limit(500)
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Withdraws an open invitation; an accepted one stays as the record of who joined.
    pub async fn revoke_invitation(&self, by: &Principal, id: Uuid) -> Result<(), StorageError> {
        let tx = self.db.org(by.org_id).await?;
        let done = invitations::Entity::delete_many()
            .filter(invitations::Column::OrgId.eq(by.org_id))
            .filter(invitations::Column::Id.eq(id))
            .filter(invitations::Column::AcceptedAt.is_null())
            .exec(tx.conn())
            .await?;
        if done.rows_affected == 0 {
            return Err(StorageError::NotFound("open invitation"));
        }
        audit::record(
            tx.conn(),
            by.org_id,
            Some(by.user_id),
            "invitation.revoke",
            None,
            serde_json::json!({ "invitation_id": id }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Creates the invitee's account in the inviting org with the invitation's role. The code
    /// works once: two accepts racing for it cannot both succeed (the claim is a conditional
    /// update inside the transaction that creates the user).
    pub async fn accept_invitation(
        &self,
        code: &str,
        email: &str,
        password: &str,
    ) -> Result<Joined, StorageError> {
        if code.is_empty() || code.len() > 256 {
            return Err(invalid_invitation());
        }
        let (email, hash) = self.new_credentials(email, password).await?;
        let tx = self.db.system().await?;
        let now = Utc::now();
        let inv = invitations::Entity::find()
            .filter(invitations::Column::CodeHash.eq(token_hash(code)))
            .filter(invitations::Column::AcceptedAt.is_null())
            .filter(invitations::Column::ExpiresAt.gt(now))
            .one(tx.conn())
            .await?
            .ok_or_else(invalid_invitation)?;
        if inv.email.as_deref().is_some_and(|e| e != email) {
            return Err(StorageError::Forbidden(
                "this invitation is for another email address".into(),
            ));
        }
        // An invitation is only as good as its issuer: one made by an admin since removed or
        // demoted is void (it could otherwise be their way back in).
        let issuer_is_admin = match inv.created_by {
            Some(by) => users::Entity::find()
                .filter(users::Column::Id.eq(by))
                .filter(users::Column::OrgId.eq(inv.org_id))
                .filter(users::Column::Role.eq(Role::Admin.as_str()))
                .filter(users::Column::RemovedAt.is_null())
                .one(tx.conn())
                .await?
                .is_some(),
            None => false,
        };
        if !issuer_is_admin {
            return Err(invalid_invitation());
        }
        let role: Role = inv.role.parse()?;
        let org = organizations::Entity::find_by_id(inv.org_id)
            .one(tx.conn())
            .await?
            .ok_or_else(invalid_invitation)?;
        let user = admit_user(tx.conn(), inv.org_id, &email, hash, role).await?;
        let claimed = invitations::Entity::update_many()
            .col_expr(invitations::Column::AcceptedAt, Expr::value(now))
            .col_expr(invitations::Column::AcceptedBy, Expr::value(user.id))
            .filter(invitations::Column::Id.eq(inv.id))
            .filter(invitations::Column::AcceptedAt.is_null())
            .exec(tx.conn())
            .await?;
        if claimed.rows_affected != 1 {
            // Dropping the transaction rolls the new user back.
            return Err(invalid_invitation());
        }
        let token = insert_token(tx.conn(), &user, "login", self.token_ttl).await?;
        audit::record(
            tx.conn(),
            inv.org_id,
            Some(user.id),
            "invitation.accept",
            Some(&email),
            serde_json::json!({ "role": role, "invitation_id": inv.id }),
        )
        .await?;
        tx.commit().await?;
        Ok(Joined {
            org,
            user: user.try_into()?,
            token,
        })
    }

    /// Changes a member's role. The org always keeps an admin.
    pub async fn set_role(
        &self,
        by: &Principal,
        user_id: Uuid,
        role: Role,
    ) -> Result<User, StorageError> {
        let tx = self.db.org(by.org_id).await?;
        lock_org(tx.conn(), by.org_id).await?;
        let member = find_member(tx.conn(), by.org_id, user_id).await?;
        if member.role == Role::Admin.as_str() && role != Role::Admin {
            ensure_another_admin(tx.conn(), by.org_id, user_id).await?;
        }
        users::Entity::update_many()
            .col_expr(users::Column::Role, Expr::value(role.as_str()))
            .filter(users::Column::Id.eq(user_id))
            .exec(tx.conn())
            .await?;
        audit::record(
            tx.conn(),
            by.org_id,
            Some(by.user_id),
            "member.role",
            Some(&member.email),
            serde_json::json!({ "user_id": user_id, "from": member.role, "to": role }),
        )
        .await?;
        tx.commit().await?;
        self.invalidate().await;
        let mut user: User = member.try_into()?;
        user.role = role;
        Ok(user)
    }

    /// Removes a member: every token of theirs is deleted and the account stops working; what
    /// they did (sessions, usage, audit rows) stays with the org. The org always keeps an admin.
    pub async fn remove_member(&self, by: &Principal, user_id: Uuid) -> Result<(), StorageError> {
        let tx = self.db.org(by.org_id).await?;
        lock_org(tx.conn(), by.org_id).await?;
        let member = find_member(tx.conn(), by.org_id, user_id).await?;
        if member.role == Role::Admin.as_str() {
            ensure_another_admin(tx.conn(), by.org_id, user_id).await?;
        }
        users::Entity::update_many()
            .col_expr(users::Column::RemovedAt, Expr::value(Utc::now()))
            .filter(users::Column::Id.eq(user_id))
            .exec(tx.conn())
            .await?;
        api_tokens::Entity::delete_many()
            .filter(api_tokens::Column::UserId.eq(user_id))
            .exec(tx.conn())
            .await?;
        audit::record(
            tx.conn(),
            by.org_id,
            Some(by.user_id),
            "member.remove",
            Some(&member.email),
            serde_json::json!({ "user_id": user_id }),
        )
        .await?;
        tx.commit().await?;
        self.invalidate().await;
        Ok(())
    }
}

// Membership changes of one org take turns (`lock_org`): two admins demoting each other at
// once must not both pass the "another admin remains" check.

async fn find_member(
    conn: &impl ConnectionTrait,
    org_id: Uuid,
    user_id: Uuid,
) -> Result<users::Model, StorageError> {
    users::Entity::find()
        .filter(users::Column::OrgId.eq(org_id))
        .filter(users::Column::Id.eq(user_id))
        .filter(users::Column::RemovedAt.is_null())
        .filter(users::Column::Agent.eq(false))
        .one(conn)
        .await?
        .ok_or(StorageError::NotFound("member"))
}

async fn ensure_another_admin(
    conn: &impl ConnectionTrait,
    org_id: Uuid,
    except: Uuid,
) -> Result<(), StorageError> {
    let others = users::Entity::find()
        .filter(users::Column::OrgId.eq(org_id))
        .filter(users::Column::Role.eq(Role::Admin.as_str()))
        .filter(users::Column::RemovedAt.is_null())
        .filter(users::Column::Id.ne(except))
        .count(conn)
        .await?;
    if others == 0 {
        return Err(StorageError::Conflict(
            "the organization must keep at least one admin".into(),
        ));
    }
    Ok(())
}
