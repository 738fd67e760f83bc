//! `incident_alerts` table: every alert delivery that changed an alert's state.
use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "incident_alerts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    /// Empty until the correlator has placed it.
    pub incident_id: Option<Uuid>,
    pub source: String,
    pub fingerprint: String,
    pub group_key: Option<String>,
    pub status: String,
    pub title: String,
    #[sea_orm(column_type = "Text")]
    pub description: String,
    pub severity: String,
    pub service: Option<String>,
    pub labels: Json,
    pub raw: Json,
    pub started_at: DateTimeUtc,
    pub received_at: DateTimeUtc,
    pub placed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
