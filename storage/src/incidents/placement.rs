//! What a correlation writes about the incidents that existed before it: where each alert
//! went, and the incidents' new counts. On PostgreSQL each is one `UPDATE ... FROM (VALUES
//! ...)` for the whole pass (a pass touches up to hundreds of incidents, and each statement is
//! a round trip); SQLite runs in process, where a statement per incident costs little.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement, Value,
};
use uuid::Uuid;

use super::correlate::OpenIncident;
use crate::entities::{incident_alerts, incidents};
use crate::{OrgTx, StorageError};

/// Rows per statement (PostgreSQL takes 65 535 parameters).
const CHUNK: usize = 1_000;

/// Places each alert (`(alert, incident or none)`), only if no correlation placed it
/// meanwhile; returns how many it placed.
pub(super) async fn place_alerts(
    tx: &OrgTx,
    now: DateTime<Utc>,
    moves: &[(Uuid, Option<Uuid>)],
) -> Result<u64, StorageError> {
    let conn = tx.conn();
    let mut placed = 0;
    if conn.get_database_backend() == DbBackend::Postgres {
        for chunk in moves.chunks(CHUNK) {
            let mut values: Vec<Value> = vec![now.into(), tx.org_id().into()];
            let mut rows = Vec::with_capacity(chunk.len());
            for (alert, incident) in chunk {
                let n = values.len();
                rows.push(format!("(${}::uuid, ${}::uuid)", n + 1, n + 2));
                values.push((*alert).into());
                values.push((*incident).into());
            }
            let sql = format!(
                "UPDATE incident_alerts AS a SET incident_id = v.incident_id, placed_at = $1 \
                 FROM (VALUES {}) AS v(id, incident_id) \
                 WHERE a.id = v.id AND a.org_id = $2 AND a.placed_at IS NULL",
                rows.join(", ")
            );
            placed += conn
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    sql,
                    values,
                ))
                .await?
                .rows_affected();
        }
        return Ok(placed);
    }
    let mut by_incident: HashMap<Option<Uuid>, Vec<Uuid>> = HashMap::new();
    for (alert, incident) in moves {
        by_incident.entry(*incident).or_default().push(*alert);
    }
    for (incident, alerts) in by_incident {
        for ids in alerts.chunks(CHUNK) {
            placed += incident_alerts::Entity::update_many()
                .col_expr(incident_alerts::Column::IncidentId, Expr::value(incident))
                .col_expr(incident_alerts::Column::PlacedAt, Expr::value(now))
                .filter(tx.org_filter::<incident_alerts::Entity>())
                .filter(incident_alerts::Column::Id.is_in(ids.iter().copied()))
                .filter(incident_alerts::Column::PlacedAt.is_null())
                .exec(conn)
                .await?
                .rows_affected;
        }
    }
    Ok(placed)
}

/// Writes what a correlation changed of incidents that existed before it. The counts are the
/// correlator's alone (one at a time per org); severity is written only when this correlation
/// changed it, and a status only when it did, over the one it was loaded with (a person's
/// dismissal meanwhile stands).
pub(super) async fn update_incidents(
    tx: &OrgTx,
    changed: &[&OpenIncident],
) -> Result<(), StorageError> {
    let conn = tx.conn();
    if conn.get_database_backend() == DbBackend::Postgres {
        for chunk in changed.chunks(CHUNK) {
            let mut values: Vec<Value> = vec![tx.org_id().into()];
            let mut rows = Vec::with_capacity(chunk.len());
            for inc in chunk {
                let row = &inc.row;
                let n = values.len();
                rows.push(format!(
                    "(${}::uuid, ${}::int, ${}::int, ${}::timestamptz, ${}::timestamptz, ${}::text)",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4,
                    n + 5,
                    n + 6
                ));
                let severity =
                    (row.severity != inc.loaded_severity()).then(|| row.severity.clone());
                values.extend([
                    row.id.into(),
                    row.alert_count.into(),
                    row.firing_count.into(),
                    row.last_alert_at.into(),
                    row.updated_at.into(),
                    severity.into(),
                ]);
            }
            let sql = format!(
                "UPDATE incidents AS i SET alert_count = v.alert_count, \
                 firing_count = v.firing_count, last_alert_at = v.last_alert_at, \
                 updated_at = v.updated_at, severity = COALESCE(v.severity, i.severity) \
                 FROM (VALUES {}) AS v(id, alert_count, firing_count, last_alert_at, updated_at, severity) \
                 WHERE i.id = v.id AND i.org_id = $1",
                rows.join(", ")
            );
            conn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await?;
        }
    } else {
        for inc in changed {
            let row = &inc.row;
            let mut update = incidents::Entity::update_many()
                .col_expr(incidents::Column::AlertCount, Expr::value(row.alert_count))
                .col_expr(
                    incidents::Column::FiringCount,
                    Expr::value(row.firing_count),
                )
                .col_expr(
                    incidents::Column::LastAlertAt,
                    Expr::value(row.last_alert_at),
                )
                .col_expr(incidents::Column::UpdatedAt, Expr::value(row.updated_at))
                .filter(tx.org_filter::<incidents::Entity>())
                .filter(incidents::Column::Id.eq(row.id));
            if row.severity != inc.loaded_severity() {
                update = update.col_expr(
                    incidents::Column::Severity,
                    Expr::value(row.severity.clone()),
                );
            }
            update.exec(conn).await?;
        }
    }
    for inc in changed.iter().filter(|i| i.row.status != i.loaded_status()) {
        let row = &inc.row;
        incidents::Entity::update_many()
            .col_expr(incidents::Column::Status, Expr::value(row.status.clone()))
            .col_expr(incidents::Column::ResolvedAt, Expr::value(row.resolved_at))
            .filter(tx.org_filter::<incidents::Entity>())
            .filter(incidents::Column::Id.eq(row.id))
            .filter(incidents::Column::Status.eq(inc.loaded_status()))
            .exec(conn)
            .await?;
    }
    Ok(())
}
