//! Incidents: webhook tokens that alerts arrive with, the alerts (and each alert's last known
//! state, which makes a repeated delivery a no-op), the incidents they open or join, the
//! background run's thoughts and citations, the live feed's events, and the scheduler's jobs.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn org_fk(table: &'static str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, "org_id")
        .to("organizations", "id")
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

fn incident_fk(table: &'static str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, "incident_id")
        .to("incidents", "id")
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

fn index(name: &str, table: &str, cols: &[&str], unique: bool) -> IndexCreateStatement {
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

/// The org-scoped tables this migration creates.
const ORG_TABLES: &[&str] = &[
    "webhook_tokens",
    "incidents",
    "incident_alerts",
    "alert_fingerprints",
    "incident_thoughts",
    "incident_citations",
    "incident_events",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            Table::create()
                .table("webhook_tokens")
                .col(uuid("id").primary_key())
                .col(uuid("org_id"))
                .col(string_len("name", 100))
                // SHA-256 of the token, as for API tokens: the token itself is shown once.
                .col(string_len("token_hash", 64).unique_key())
                // Where the PagerDuty signing secret lives in the secret store, when one is set.
                .col(string_len_null("secret_ref", 200))
                .col(uuid_null("created_by"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("last_used_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .foreign_key(&mut org_fk("webhook_tokens"))
                .to_owned(),
            Table::create()
                .table("incidents")
                .col(uuid("id").primary_key())
                .col(uuid("org_id"))
                .col(string_len("title", 500))
                // investigating | analyzed | resolved | dismissed
                .col(string_len("status", 16))
                .col(string_len("severity", 16))
                .col(string_len("source", 16))
                .col(string_len_null("service", 200))
                .col(timestamp_with_time_zone("started_at"))
                // The newest alert's arrival: the correlation window runs from it.
                .col(timestamp_with_time_zone("last_alert_at"))
                .col(timestamp_with_time_zone_null("resolved_at"))
                .col(text_null("summary"))
                .col(text_null("root_cause"))
                .col(text_null("remediation"))
                .col(text_null("notes"))
                // queued | running | done | failed
                .col(string_len("rca_status", 16))
                .col(integer("rca_attempts"))
                // The analysis run the thoughts of now go to (0: none yet).
                .col(integer("rca_run").default(0))
                // The node running the analysis and when it last said so (stale: re-queued).
                .col(string_len_null("rca_node", 200))
                .col(timestamp_with_time_zone_null("rca_heartbeat_at"))
                .col(text_null("rca_error"))
                .col(integer("alert_count"))
                .col(integer("firing_count"))
                // The background chat session that investigated it.
                .col(uuid_null("session_id"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut org_fk("incidents"))
                .to_owned(),
            Table::create()
                .table("incident_alerts")
                .col(uuid("id").primary_key())
                .col(uuid("org_id"))
                // Empty until the correlator has placed the alert.
                .col(uuid_null("incident_id"))
                .col(string_len("source", 16))
                .col(string_len("fingerprint", 256))
                .col(string_len_null("group_key", 256))
                // firing | resolved
                .col(string_len("status", 16))
                .col(string_len("title", 500))
                .col(text("description"))
                .col(string_len("severity", 16))
                .col(string_len_null("service", 200))
                .col(json_binary("labels"))
                .col(json_binary("raw"))
                .col(timestamp_with_time_zone("started_at"))
                .col(timestamp_with_time_zone("received_at"))
                // When the correlator placed it (in an incident, or nowhere: a resolution of
                // an alert no open incident holds); empty while it waits.
                .col(timestamp_with_time_zone_null("placed_at"))
                .foreign_key(&mut org_fk("incident_alerts"))
                .foreign_key(
                    ForeignKey::create()
                        .from("incident_alerts", "incident_id")
                        .to("incidents", "id")
                        .on_delete(ForeignKeyAction::SetNull),
                )
                .to_owned(),
            Table::create()
                .table("alert_fingerprints")
                .col(uuid("org_id"))
                .col(string_len("source", 16))
                .col(string_len("fingerprint", 256))
                .col(string_len("status", 16))
                .col(timestamp_with_time_zone("updated_at"))
                .primary_key(
                    Index::create()
                        .col("org_id")
                        .col("source")
                        .col("fingerprint"),
                )
                .foreign_key(&mut org_fk("alert_fingerprints"))
                .to_owned(),
            Table::create()
                .table("incident_thoughts")
                .col(uuid("id").primary_key())
                .col(uuid("org_id"))
                .col(uuid("incident_id"))
                // Which analysis of the incident (1 for the first, +1 per "analyse again").
                .col(integer("run"))
                // Order within the incident, over all its runs.
                .col(integer("seq"))
                // thought | tool_call | tool_result | finding
                .col(string_len("kind", 16))
                .col(text("content"))
                .col(string_len_null("tool_name", 64))
                .col(string_len_null("tool_call_id", 128))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut org_fk("incident_thoughts"))
                .foreign_key(&mut incident_fk("incident_thoughts"))
                .to_owned(),
            Table::create()
                .table("incident_citations")
                .col(uuid("id").primary_key())
                .col(uuid("org_id"))
                .col(uuid("incident_id"))
                .col(integer("run"))
                // kb_chunk | tool_output | alert
                .col(string_len("kind", 16))
                // The chunk id, the tool call id or the alert id it points at.
                .col(string_len("reference", 200))
                .col(string_len("title", 300))
                .col(text("excerpt"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut org_fk("incident_citations"))
                .foreign_key(&mut incident_fk("incident_citations"))
                .to_owned(),
            Table::create()
                .table("incident_events")
                .col(pk_auto("id"))
                .col(uuid("org_id"))
                .col(uuid("incident_id"))
                // incident | thought
                .col(string_len("kind", 16))
                .col(json_binary("data"))
                .col(timestamp_with_time_zone("created_at"))
                .foreign_key(&mut org_fk("incident_events"))
                .foreign_key(&mut incident_fk("incident_events"))
                .to_owned(),
            // Cluster-wide, not an org's: which period each periodic job last ran for.
            Table::create()
                .table("scheduler_jobs")
                .col(string_len("name", 64).primary_key())
                .col(big_integer("period"))
                .col(string_len("node", 200))
                .col(timestamp_with_time_zone("started_at"))
                .col(timestamp_with_time_zone_null("finished_at"))
                .col(string_len_null("outcome", 16))
                .col(text_null("detail"))
                .col(big_integer_null("duration_ms"))
                .to_owned(),
        ];
        for table in tables {
            manager.create_table(table).await?;
        }
        let indexes = [
            index(
                "incidents_org_status_idx",
                "incidents",
                &["org_id", "status", "last_alert_at"],
                false,
            ),
            index(
                "incidents_org_started_idx",
                "incidents",
                &["org_id", "started_at"],
                false,
            ),
            index("incidents_rca_idx", "incidents", &["rca_status"], false),
            index(
                "incident_alerts_incident_idx",
                "incident_alerts",
                &["incident_id", "received_at"],
                false,
            ),
            index(
                "incident_alerts_unplaced_idx",
                "incident_alerts",
                &["org_id", "placed_at", "received_at"],
                false,
            ),
            index(
                "incident_thoughts_incident_idx",
                "incident_thoughts",
                &["incident_id", "seq"],
                true,
            ),
            index(
                "incident_citations_incident_idx",
                "incident_citations",
                &["incident_id"],
                false,
            ),
            index(
                "incident_events_org_idx",
                "incident_events",
                &["org_id", "id"],
                false,
            ),
            index(
                "webhook_tokens_org_idx",
                "webhook_tokens",
                &["org_id"],
                false,
            ),
        ];
        for idx in indexes {
            manager.create_index(idx).await?;
        }
        for table in ORG_TABLES {
            super::enable_rls(manager, table, "org_id").await?;
        }
        // The agent account each org's background runs act as: no password, no tokens, not
        // a member anyone sees or manages.
        manager
            .alter_table(
                Table::alter()
                    .table("users")
                    .add_column(boolean("agent").default(false))
                    .to_owned(),
            )
            .await?;
        // Long conversations: the model sees a summary of the first `context_skip` context
        // entries instead of them (the history a user reads keeps everything).
        manager
            .alter_table(
                Table::alter()
                    .table("chat_sessions")
                    .add_column(text_null("context_summary"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("chat_sessions")
                    .add_column(integer("context_skip").default(0))
                    .to_owned(),
            )
            .await?;
        // Durable turns: the turn a session runs, while it runs (JSON text: the node running
        // it, its model, mode and whether a human is attached); NULL between turns. A node
        // that takes over a session whose turn's node died continues that turn.
        manager
            .alter_table(
                Table::alter()
                    .table("chat_sessions")
                    .add_column(text_null("open_turn"))
                    .to_owned(),
            )
            .await?;
        // Partial: the sweep for turns left by a dead node reads only the few open ones.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX chat_sessions_open_turn_idx ON chat_sessions (id) \
                 WHERE open_turn IS NOT NULL",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS chat_sessions_open_turn_idx")
            .await?;
        for column in ["open_turn", "context_skip", "context_summary"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("chat_sessions")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table("users")
                    .drop_column("agent")
                    .to_owned(),
            )
            .await?;
        for table in [
            "scheduler_jobs",
            "incident_events",
            "incident_citations",
            "incident_thoughts",
            "alert_fingerprints",
            "incident_alerts",
            "incidents",
            "webhook_tokens",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
