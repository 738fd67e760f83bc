//! The live feed's event ids become 64-bit on PostgreSQL: every incident change and every
//! thought of every org takes one, and a busy installation would run through 2^31 of them.
//! SQLite's integer keys are 64-bit already.

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0009_feed_ids"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "ALTER TABLE incident_events ALTER COLUMN id TYPE bigint; \
                     ALTER SEQUENCE incident_events_id_seq AS bigint",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "ALTER SEQUENCE incident_events_id_seq AS integer; \
                     ALTER TABLE incident_events ALTER COLUMN id TYPE integer",
                )
                .await?;
        }
        Ok(())
    }
}
