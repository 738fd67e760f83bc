//! The orgs' cloud credentials, by reference: each row names its provider, a label, what is not
//! secret about it (region, project, API server, ...) and where its secret lives in the secret
//! store. The secret values themselves never enter the relational store.

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
                    .table("org_credentials")
                    .col(uuid("id").primary_key())
                    .col(uuid("org_id"))
                    // aws | gcp | azure | kubernetes
                    .col(string_len("provider", 16))
                    .col(string_len("name", 100))
                    .col(json_binary("metadata"))
                    // `orgs/<org_id>/credentials/<id>` in the secret store.
                    .col(string_len("secret_ref", 200))
                    .col(uuid_null("created_by"))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("org_credentials", "org_id")
                            .to("organizations", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("org_credentials_org_name_idx")
                    .table("org_credentials")
                    .col("org_id")
                    .col("name")
                    .unique()
                    .to_owned(),
            )
            .await?;
        super::enable_rls(manager, "org_credentials", "org_id").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("org_credentials").to_owned())
            .await
    }
}
