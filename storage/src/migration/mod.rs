//! Schema migrations. Each later capability adds its own `mNNNN_*.rs` here and lists it in
//! [`Migrator::migrations`]. Tables are written once with sea-query's builder so the same
//! migration runs on PostgreSQL and SQLite; PostgreSQL additionally gets row-level security.

mod m0001_foundation;
mod m0002_command_policies;
mod m0003_usage_totals;
mod m0004_chat_messages;
mod m0005_knowledge_base;
mod m0006_org_credentials;
mod m0007_members_and_invitations;
mod m0008_incidents;
mod m0009_feed_ids;

use sea_orm_migration::prelude::*;
pub use sea_orm_migration::MigratorTrait;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_foundation::Migration),
            Box::new(m0002_command_policies::Migration),
            Box::new(m0003_usage_totals::Migration),
            Box::new(m0004_chat_messages::Migration),
            Box::new(m0005_knowledge_base::Migration),
            Box::new(m0006_org_credentials::Migration),
            Box::new(m0007_members_and_invitations::Migration),
            Box::new(m0008_incidents::Migration),
            Box::new(m0009_feed_ids::Migration),
        ]
    }
}

/// Puts `table` under row-level security by `column` on PostgreSQL (SQLite has none; the
/// repository layer's org filter stands in there).
pub(crate) async fn enable_rls(
    manager: &SchemaManager<'_>,
    table: &str,
    column: &str,
) -> Result<(), DbErr> {
    use sea_orm::{ConnectionTrait, DbBackend};
    if manager.get_database_backend() == DbBackend::Postgres {
        for sql in rls_statements(table, column) {
            manager.get_connection().execute_unprepared(&sql).await?;
        }
    }
    Ok(())
}

/// The row-level-security policy of one org-scoped table: a row is visible and writable only when
/// the transaction's `aurora.org_id` names its org, or in an explicit system transaction. With
/// neither set (a query that bypassed the repository layer) nothing is visible: it fails closed.
pub(crate) fn rls_statements(table: &str, column: &str) -> Vec<String> {
    // The settings are read in scalar subqueries so PostgreSQL evaluates them once per query
    // (an InitPlan) instead of once per row, and the org column can still use an index.
    let predicate = format!(
        "(SELECT current_setting('aurora.system', true)) = 'on' \
         OR {column} = (SELECT NULLIF(current_setting('aurora.org_id', true), '')::uuid)"
    );
    vec![
        format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"),
        format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"),
        format!("DROP POLICY IF EXISTS org_isolation ON {table}"),
        format!(
            "CREATE POLICY org_isolation ON {table} USING ({predicate}) WITH CHECK ({predicate})"
        ),
    ]
}
