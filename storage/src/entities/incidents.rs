//! `incidents` table: what correlated alerts (or a person) opened, with its background analysis.
use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "incidents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub title: String,
    pub status: String,
    pub severity: String,
    pub source: String,
    pub service: Option<String>,
    pub started_at: DateTimeUtc,
    pub last_alert_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub summary: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub root_cause: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub remediation: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub notes: Option<String>,
    pub rca_status: String,
    pub rca_attempts: i32,
    pub rca_run: i32,
    #[serde(skip)]
    pub rca_node: Option<String>,
    #[serde(skip)]
    pub rca_heartbeat_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub rca_error: Option<String>,
    pub alert_count: i32,
    pub firing_count: i32,
    pub session_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
