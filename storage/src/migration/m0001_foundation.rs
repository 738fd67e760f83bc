//! Organizations, users, API tokens, preferences, chat sessions, LLM usage and the audit log.

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The org-scoped tables this migration creates, with their org column.
const TABLES_WITH_RLS: &[(&str, &str)] = &[
    ("organizations", "id"),
    ("users", "org_id"),
    ("api_tokens", "org_id"),
    ("user_preferences", "org_id"),
    ("chat_sessions", "org_id"),
    ("llm_usage", "org_id"),
    ("audit_log", "org_id"),
];

#[derive(DeriveMigrationName)]
pub struct Migration;

fn fk_cascade(from: &str, col: &str, to: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(String::from(from), String::from(col))
        .to(String::from(to), "id")
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

fn index(table: &str, name: &str, cols: &[&str], unique: bool) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(String::from(table));
    for c in cols {
        idx.col(String::from(*c));
    }
    if unique {
        idx.unique();
    }
    idx.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables = vec![
            Table::create()
                .table("organizations")
                .col(uuid("id").primary_key())
                .col(string_len("name", 200))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
            Table::create()
                .table("users")
                .col(uuid("id").primary_key())
                .col(uuid("org_id"))
                .col(string_len("email", 254))
                .col(string("password_hash"))
                .col(string_len("role", 16))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk_cascade("users", "org_id", "organizations"))
                .to_owned(),
            Table::create()
                .table("api_tokens")
                .col(uuid("id").primary_key())
                .col(uuid("org_id"))
                .col(uuid("user_id"))
                .col(string_len("token_hash", 64))
                .col(string_len("name", 100))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("expires_at"))
                .foreign_key(&mut fk_cascade("api_tokens", "user_id", "users"))
                .to_owned(),
            Table::create()
                .table("user_preferences")
                .col(uuid("user_id"))
                .col(string_len("key", 128))
                .col(uuid("org_id"))
                .col(json_binary("value"))
                .col(timestamp_with_time_zone("updated_at"))
                .primary_key(Index::create().col("user_id").col("key"))
                .foreign_key(&mut fk_cascade("user_preferences", "user_id", "users"))
                .to_owned(),
            Table::create()
                .table("chat_sessions")
                .col(uuid("id").primary_key())
                .col(uuid("org_id"))
                .col(uuid("user_id"))
                .col(string_len("title", 500))
                .col(json_binary("messages"))
                .col(json_binary("llm_context_history"))
                .col(string_len("status", 16))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .col(timestamp_with_time_zone_null("deleted_at"))
                .foreign_key(&mut fk_cascade("chat_sessions", "user_id", "users"))
                .to_owned(),
            Table::create()
                .table("llm_usage")
                .col(uuid("id").primary_key())
                .col(uuid("org_id"))
                .col(uuid("user_id"))
                .col(uuid_null("session_id"))
                .col(string_len("provider", 32))
                .col(string_len("model", 200))
                .col(big_integer("input_tokens"))
                .col(big_integer("output_tokens"))
                .col(double("cost_usd"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk_cascade("llm_usage", "user_id", "users"))
                .to_owned(),
            Table::create()
                .table("audit_log")
                .col(uuid("id").primary_key())
                .col(uuid("org_id"))
                .col(uuid_null("user_id"))
                .col(string_len("action", 64))
                .col(text_null("target"))
                .col(json_binary("details"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut fk_cascade("audit_log", "org_id", "organizations"))
                .to_owned(),
        ];
        for table in tables {
            manager.create_table(table).await?;
        }
        let indexes = [
            index("users", "users_email_key", &["email"], true),
            index("users", "users_org_idx", &["org_id"], false),
            index("api_tokens", "api_tokens_hash_key", &["token_hash"], true),
            index("api_tokens", "api_tokens_user_idx", &["user_id"], false),
            index(
                "chat_sessions",
                "chat_sessions_user_updated_idx",
                &["user_id", "updated_at"],
                false,
            ),
            index(
                "llm_usage",
                "llm_usage_user_created_idx",
                &["user_id", "created_at"],
                false,
            ),
            index(
                "audit_log",
                "audit_log_org_created_idx",
                &["org_id", "created_at"],
                false,
            ),
        ];
        for idx in indexes {
            manager.create_index(idx).await?;
        }
        if manager.get_database_backend() == DbBackend::Postgres {
            let conn = manager.get_connection();
            for (table, column) in TABLES_WITH_RLS {
                for sql in super::rls_statements(table, column) {
                    conn.execute_unprepared(&sql).await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "audit_log",
            "llm_usage",
            "chat_sessions",
            "user_preferences",
            "api_tokens",
            "users",
            "organizations",
        ] {
            manager
                .drop_table(Table::drop().table(String::from(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
