//! `chat_messages` table. One turn's history or model-context entries of a session (a JSON
//! array; rows written before turns were stored whole hold a single entry), appended by the
//! turn writer; ids are UUIDv7, so their order is the order of appending.
use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "chat_messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub org_id: Uuid,
    pub session_id: Uuid,
    pub kind: String,
    pub body: Json,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
