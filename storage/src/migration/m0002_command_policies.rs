//! Per-org allow/deny rules for the commands agents run.

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
                    .table("command_policies")
                    .col(uuid("id").primary_key())
                    .col(uuid("org_id"))
                    .col(string_len("effect", 8))
                    .col(string_len("pattern", 500))
                    .col(text_null("description"))
                    .col(uuid_null("created_by"))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("command_policies", "org_id")
                            .to("organizations", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("command_policies_org_idx")
                    .table("command_policies")
                    .col("org_id")
                    .to_owned(),
            )
            .await?;
        super::enable_rls(manager, "command_policies", "org_id").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("command_policies").to_owned())
            .await
    }
}
