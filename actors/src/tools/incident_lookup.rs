//! `incident_lookup`: the agent reads its org's incidents: the recent ones, or one with its
//! alerts. Read-only, so it runs in ask mode and in background analyses without approval.

use std::time::Instant;

use aurora_models::llm::ToolSpec;
use aurora_storage::incidents::queries::IncidentFilter;
use aurora_storage::incidents::Incidents;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{ToolError, ToolOutput};

pub const NAME: &str = "incident_lookup";
const MAX_LIMIT: u64 = 50;

pub fn spec() -> ToolSpec {
    ToolSpec {
        name: NAME.into(),
        description: "Look up the organization's incidents: without incident_id, the most recent \
                      ones; with it, that incident and its alerts (labels, status, times). Cite \
                      alerts by their id."
            .into(),
        parameters: json!({
            "type": "object",
            "properties": {
                "incident_id": { "type": "string", "description": "an incident id" },
                "limit": { "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "description": "how many (default 10)" }
            },
            "additionalProperties": false,
        }),
    }
}

/// The checked arguments: the incident asked about, and how many rows.
pub fn parse(input: &Value) -> Result<(Option<Uuid>, u64), ToolError> {
    let id = match input.get("incident_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Uuid::parse_str(s.trim()).map_err(|_| {
            ToolError::InvalidArguments("incident_id must be an incident's id (a UUID)".into())
        })?),
        Some(_) => {
            return Err(ToolError::InvalidArguments(
                "incident_id must be a string".into(),
            ))
        }
    };
    let limit = match input.get("limit") {
        None | Some(Value::Null) => 10,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ToolError::InvalidArguments(format!(
                    "limit must be an integer from 1 to {MAX_LIMIT}"
                ))
            })?,
    };
    Ok((id, limit))
}

/// Runs the lookup in `org_id`'s incidents only.
pub async fn run(
    incidents: Incidents,
    org_id: Uuid,
    id: Option<Uuid>,
    limit: u64,
) -> Result<ToolOutput, ToolError> {
    let started = Instant::now();
    let storage = |e: aurora_storage::StorageError| ToolError::Storage(e.to_string());
    let output = match id {
        None => {
            let filter = IncidentFilter {
                limit,
                ..Default::default()
            };
            let rows = incidents.list(org_id, &filter).await.map_err(storage)?;
            let rows: Vec<Value> = rows
                .iter()
                .map(|i| {
                    json!({
                        "id": i.id, "title": i.title, "status": i.status, "severity": i.severity,
                        "service": i.service, "started_at": i.started_at, "alert_count": i.alert_count,
                        "root_cause": i.root_cause,
                    })
                })
                .collect();
            serde_json::to_string_pretty(&json!({ "incidents": rows })).unwrap_or_default()
        }
        Some(id) => {
            let inc = match incidents.detail(org_id, id).await {
                Ok(d) => d.incident,
                Err(aurora_storage::StorageError::NotFound(_)) => {
                    return Err(ToolError::InvalidArguments(format!("no incident {id}")))
                }
                Err(e) => return Err(storage(e)),
            };
            let alerts = incidents
                .alerts_of(org_id, id, limit)
                .await
                .map_err(storage)?;
            let alerts: Vec<Value> = alerts
                .iter()
                .map(|a| {
                    json!({
                        "id": a.id, "source": a.source, "status": a.status, "title": a.title,
                        "severity": a.severity, "service": a.service, "labels": a.labels,
                        "description": a.description.chars().take(500).collect::<String>(),
                        "started_at": a.started_at, "received_at": a.received_at,
                    })
                })
                .collect();
            let v = json!({
                "incident": {
                    "id": inc.id, "title": inc.title, "status": inc.status, "severity": inc.severity,
                    "service": inc.service, "started_at": inc.started_at, "alert_count": inc.alert_count,
                    "firing_count": inc.firing_count,
                },
                "alerts": alerts,
            });
            serde_json::to_string_pretty(&v).unwrap_or_default()
        }
    };
    Ok(ToolOutput {
        output,
        exit_code: Some(0),
        truncated: false,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked() {
        assert_eq!(parse(&json!({})).unwrap(), (None, 10));
        let id = Uuid::now_v7();
        assert_eq!(
            parse(&json!({"incident_id": id.to_string(), "limit": 3})).unwrap(),
            (Some(id), 3)
        );
        assert!(parse(&json!({"incident_id": "nope"})).is_err());
        assert!(parse(&json!({"incident_id": 7})).is_err());
        assert!(parse(&json!({"limit": 0})).is_err());
        assert!(parse(&json!({"limit": 51})).is_err());
    }
}
