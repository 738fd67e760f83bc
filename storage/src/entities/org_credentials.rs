//! `org_credentials` table: an org's cloud credentials by reference (the secret values live in
//! the secret store, at `secret_ref`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "org_credentials")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    /// `aws`, `gcp`, `azure` or `kubernetes`.
    pub provider: String,
    /// Unique within the org.
    pub name: String,
    /// What is not secret: region, endpoint, project, API server, namespace.
    pub metadata: Json,
    /// Where the secret lives in the secret store (`orgs/<org_id>/credentials/<id>`).
    pub secret_ref: String,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
