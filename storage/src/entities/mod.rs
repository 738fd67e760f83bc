//! sea-orm entities, one module per table. Every org-scoped entity implements [`OrgScoped`] so the
//! repository layer can add the org filter to every query it builds.

pub mod alert_fingerprints;
pub mod api_tokens;
pub mod audit_log;
pub mod chat_messages;
pub mod chat_sessions;
pub mod command_policies;
pub mod incident_alerts;
pub mod incident_citations;
pub mod incident_events;
pub mod incident_thoughts;
pub mod incidents;
pub mod invitations;
pub mod kb_chunks;
pub mod kb_documents;
pub mod kb_index_versions;
pub mod kb_memory;
pub mod llm_usage;
pub mod llm_usage_totals;
pub mod org_credentials;
pub mod organizations;
pub mod scheduler_jobs;
pub mod user_preferences;
pub mod users;
pub mod webhook_tokens;

use sea_orm::EntityTrait;

/// An entity whose rows belong to one organization.
pub trait OrgScoped: EntityTrait {
    /// The column holding the owning org's id.
    fn org_column() -> Self::Column;
}

macro_rules! org_scoped {
    ($($module:ident => $column:ident),* $(,)?) => {
        $(impl OrgScoped for $module::Entity {
            fn org_column() -> Self::Column {
                $module::Column::$column
            }
        })*
    };
}

org_scoped!(
    organizations => Id,
    users => OrgId,
    api_tokens => OrgId,
    user_preferences => OrgId,
    chat_sessions => OrgId,
    chat_messages => OrgId,
    llm_usage => OrgId,
    llm_usage_totals => OrgId,
    audit_log => OrgId,
    command_policies => OrgId,
    kb_documents => OrgId,
    kb_chunks => OrgId,
    kb_memory => OrgId,
    kb_index_versions => OrgId,
    org_credentials => OrgId,
    invitations => OrgId,
    webhook_tokens => OrgId,
    incidents => OrgId,
    incident_alerts => OrgId,
    alert_fingerprints => OrgId,
    incident_thoughts => OrgId,
    incident_citations => OrgId,
    incident_events => OrgId,
);

/// The org-scoped tables, as named in SQL: each has row-level security on PostgreSQL.
pub const ORG_SCOPED_TABLES: &[(&str, &str)] = &[
    ("organizations", "id"),
    ("users", "org_id"),
    ("api_tokens", "org_id"),
    ("user_preferences", "org_id"),
    ("chat_sessions", "org_id"),
    ("chat_messages", "org_id"),
    ("llm_usage", "org_id"),
    ("llm_usage_totals", "org_id"),
    ("audit_log", "org_id"),
    ("command_policies", "org_id"),
    ("kb_documents", "org_id"),
    ("kb_chunks", "org_id"),
    ("kb_memory", "org_id"),
    ("kb_index_versions", "org_id"),
    ("org_credentials", "org_id"),
    ("invitations", "org_id"),
    ("webhook_tokens", "org_id"),
    ("incidents", "org_id"),
    ("incident_alerts", "org_id"),
    ("alert_fingerprints", "org_id"),
    ("incident_thoughts", "org_id"),
    ("incident_citations", "org_id"),
    ("incident_events", "org_id"),
];
