//! `chat_sessions` table. History of one chat; soft-deleted rows keep `deleted_at`.
use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "chat_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub user_id: Uuid,
    pub title: String,
    pub messages: Json,
    pub llm_context_history: Json,
    pub status: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub deleted_at: Option<DateTimeUtc>,
    /// What the model sees instead of the first `context_skip` context entries.
    #[serde(skip)]
    pub context_summary: Option<String>,
    #[serde(skip)]
    pub context_skip: i32,
    /// The turn running in this session (JSON text, see `turns::OpenTurn`); NULL between turns.
    #[serde(skip)]
    pub open_turn: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
