//! Grafana unified alerting webhook contact point (payload `version` "1").
//!
//! Its alerts have the Alertmanager shape (plus `silenceURL`, `values`, `valueString`... kept
//! in `raw`), so they are normalized by [`super::alertmanager::normalize_all`]; the only
//! Grafana-specific part is the title fallback, the delivery's `title`. The `version` is not
//! checked: Grafana has only ever sent "1" for this shape, and the legacy (pre-unified) payload
//! without `alerts` is refused as missing that field.

use aurora_storage::incidents::{NewAlert, Source};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::alertmanager::{normalize_all, Context};
use super::{non_empty, typed, IntakeError};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    alerts: Vec<Value>,
    #[serde(default)]
    group_key: Option<String>,
    /// Deprecated by Grafana, but still the best title when an alert has no summary/alertname.
    #[serde(default)]
    title: Option<String>,
}

pub(super) fn parse(
    value: Value,
    received_at: DateTime<Utc>,
) -> Result<Vec<NewAlert>, IntakeError> {
    let delivery: Delivery = typed(&value, "Grafana webhook")?;
    let title = non_empty(delivery.title.as_deref());
    let ctx = Context {
        source: Source::Grafana,
        group_key: delivery.group_key.as_deref(),
        fallback_title: title.as_deref().unwrap_or("Grafana alert"),
    };
    normalize_all(&ctx, delivery.alerts, received_at)
}
