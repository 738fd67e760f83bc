//! Members an admin controls: single-use invitations into an org, and members removed without
//! losing what they did (their rows stay; the account stops working).

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
                    .table("invitations")
                    .col(uuid("id").primary_key())
                    .col(uuid("org_id"))
                    // SHA-256 of the code, as for API tokens: the code itself is shown once.
                    .col(string_len("code_hash", 64).unique_key())
                    .col(string_len("role", 16))
                    // When set, only this address may accept.
                    .col(string_len_null("email", 320))
                    .col(uuid_null("created_by"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("expires_at"))
                    .col(timestamp_with_time_zone_null("accepted_at"))
                    .col(uuid_null("accepted_by"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("invitations", "org_id")
                            .to("organizations", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        super::enable_rls(manager, "invitations", "org_id").await?;
        manager
            .alter_table(
                Table::alter()
                    .table("users")
                    .add_column(timestamp_with_time_zone_null("removed_at"))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("users")
                    .drop_column("removed_at")
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table("invitations").to_owned())
            .await
    }
}
