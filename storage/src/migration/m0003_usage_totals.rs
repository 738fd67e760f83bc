//! Each user's running LLM usage total, kept in step with `llm_usage` inside the same
//! transaction, so reading a total never aggregates a user's whole history.

use sea_orm::ConnectionTrait;
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
                    .table("llm_usage_totals")
                    .col(uuid("user_id").primary_key())
                    .col(uuid("org_id"))
                    .col(big_integer("calls"))
                    .col(double("cost_usd"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("llm_usage_totals", "org_id")
                            .to("organizations", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from("llm_usage_totals", "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        let conn = manager.get_connection();
        // Existing rows, summed once.
        conn.execute_unprepared(
            "INSERT INTO llm_usage_totals (user_id, org_id, calls, cost_usd, updated_at) \
             SELECT user_id, org_id, COUNT(*), SUM(cost_usd), MAX(created_at) \
             FROM llm_usage GROUP BY user_id, org_id",
        )
        .await?;
        super::enable_rls(manager, "llm_usage_totals", "org_id").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("llm_usage_totals").to_owned())
            .await
    }
}
