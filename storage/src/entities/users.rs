//! `users` table. Emails are unique across orgs, stored lower-cased; passwords only as argon2 hashes.
use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    #[serde(skip)]
    pub password_hash: String,
    pub role: String,
    pub created_at: DateTimeUtc,
    /// Set when an admin removed the member: the account stops working, its rows stay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<DateTimeUtc>,
    /// The org's agent account (background runs act as it): it cannot sign in and is no
    /// member anyone sees or manages.
    #[serde(skip)]
    pub agent: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
