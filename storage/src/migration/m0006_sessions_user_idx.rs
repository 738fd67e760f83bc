//! Sessions indexed by user alone, no longer by `(user_id, updated_at)`: every saved turn moves
//! its session's `updated_at`, and with it that index entry (a delete and an insert, on pages
//! all over the index), which was about a fifth of writing a batch of turns. Listing a user's
//! sessions by recency now sorts that user's rows (a top-N sort for a page): a few
//! milliseconds for a user with ten thousand sessions, against one index write per turn.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const OLD: &str = "chat_sessions_user_updated_idx";
const NEW: &str = "chat_sessions_user_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NEW)
                    .table("chat_sessions")
                    .col("user_id")
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(Index::drop().name(OLD).table("chat_sessions").to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(OLD)
                    .table("chat_sessions")
                    .col("user_id")
                    .col("updated_at")
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(Index::drop().name(NEW).table("chat_sessions").to_owned())
            .await
    }
}
