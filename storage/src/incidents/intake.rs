//! Storing a delivery's alerts: durable before the webhook is answered, and a repeated
//! delivery of an alert in the state it already has stores nothing.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, EntityTrait};
use uuid::Uuid;

use super::{Incidents, NewAlert};
use crate::entities::{alert_fingerprints, incident_alerts};
use crate::StorageError;

/// What a delivery stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// Alerts in the delivery.
    pub received: usize,
    /// Those that changed an alert's state (the rest repeated what was known).
    pub stored: usize,
}

impl Incidents {
    /// Stores `alerts` of `org_id` in one transaction: all or none.
    pub async fn store_alerts(
        &self,
        org_id: Uuid,
        alerts: Vec<NewAlert>,
        received_at: DateTime<Utc>,
    ) -> Result<Stored, StorageError> {
        let received = alerts.len();
        if alerts.is_empty() {
            return Ok(Stored::default());
        }
        let tx = self.db.org(org_id).await?;
        let mut stored = 0;
        for alert in alerts {
            let status = alert.status.as_str();
            // Insert the alert's state, or change it only when it differs: no row touched
            // means this delivery repeats what is known.
            let state = alert_fingerprints::ActiveModel {
                org_id: Set(org_id),
                source: Set(alert.source.as_str().into()),
                fingerprint: Set(alert.fingerprint.clone()),
                status: Set(status.into()),
                updated_at: Set(received_at),
            };
            let changed = alert_fingerprints::Entity::insert(state)
                .on_conflict(
                    OnConflict::columns([
                        alert_fingerprints::Column::OrgId,
                        alert_fingerprints::Column::Source,
                        alert_fingerprints::Column::Fingerprint,
                    ])
                    .update_columns([
                        alert_fingerprints::Column::Status,
                        alert_fingerprints::Column::UpdatedAt,
                    ])
                    .action_and_where(
                        Expr::col((
                            alert_fingerprints::Entity,
                            alert_fingerprints::Column::Status,
                        ))
                        .ne(status),
                    )
                    .to_owned(),
                )
                .exec_without_returning(tx.conn())
                .await?;
            if changed == 0 {
                continue;
            }
            let row = incident_alerts::ActiveModel {
                id: Set(Uuid::now_v7()),
                org_id: Set(org_id),
                incident_id: Set(None),
                source: Set(alert.source.as_str().into()),
                fingerprint: Set(alert.fingerprint),
                group_key: Set(alert.group),
                status: Set(status.into()),
                title: Set(alert.title),
                description: Set(alert.description),
                severity: Set(alert.severity.as_str().into()),
                service: Set(alert.service),
                labels: Set(serde_json::to_value(&alert.labels).unwrap_or_default()),
                raw: Set(alert.raw),
                started_at: Set(alert.started_at.unwrap_or(received_at)),
                received_at: Set(received_at),
                placed_at: Set(None),
            };
            incident_alerts::Entity::insert(row)
                .exec_without_returning(tx.conn())
                .await?;
            stored += 1;
        }
        tx.commit().await?;
        Ok(Stored { received, stored })
    }
}
