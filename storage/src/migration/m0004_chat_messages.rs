//! Chat history as append-only rows. A turn used to rewrite the session row's whole history
//! and model context (JSON arrays), so each turn cost more than the last and a batch of turns
//! could not be written in one statement. The arrays stay as each session's legacy prefix;
//! new entries are rows.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("chat_messages")
                    .col(uuid("id").primary_key())
                    .col(uuid("org_id"))
                    .col(uuid("session_id"))
                    // `history` (shown to the user) or `context` (what the model sees).
                    .col(string_len("kind", 16))
                    .col(json("body"))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("chat_messages", "session_id")
                            .to("chat_sessions", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from("chat_messages", "org_id")
                            .to("organizations", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("chat_messages_session_idx")
                    .table("chat_messages")
                    .col("session_id")
                    .col("kind")
                    .col("id")
                    .to_owned(),
            )
            .await?;
        super::enable_rls(manager, "chat_messages", "org_id").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("chat_messages").to_owned())
            .await
    }
}
