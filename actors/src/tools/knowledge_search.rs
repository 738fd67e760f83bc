//! `knowledge_base_search`: the agent searches its org's runbooks and documents. Read-only, so
//! it runs in ask mode and needs no approval; results carry their document and chunk so the
//! agent can cite them.

use std::sync::Arc;
use std::time::Instant;

use aurora_models::llm::ToolSpec;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{ToolError, ToolOutput};
use crate::knowledge::{KbError, KnowledgeBase, MAX_SEARCH_LIMIT};

pub const NAME: &str = "knowledge_base_search";
const DEFAULT_LIMIT: usize = 5;

pub fn spec() -> ToolSpec {
    ToolSpec {
        name: NAME.into(),
        description: "Search the organization's knowledge base (uploaded runbooks, postmortems, \
                      documentation). Returns the most relevant passages with their source \
                      document; cite the sources you use."
            .into(),
        parameters: json!({
            "type": "object",
            "properties": {
                "query": { "type": "string", "description": "what to look for, in natural language" },
                "limit": { "type": "integer", "minimum": 1, "maximum": MAX_SEARCH_LIMIT, "description": "how many passages (default 5)" }
            },
            "required": ["query"],
            "additionalProperties": false,
        }),
    }
}

/// The checked arguments of a call.
pub fn parse(input: &Value) -> Result<(String, usize), ToolError> {
    let query = input
        .get("query")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .ok_or_else(|| ToolError::InvalidArguments("expected {\"query\": \"...\"}".into()))?;
    let limit = match input.get("limit") {
        None | Some(Value::Null) => DEFAULT_LIMIT,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_SEARCH_LIMIT as u64).contains(n))
            .ok_or_else(|| {
                ToolError::InvalidArguments(format!(
                    "limit must be an integer from 1 to {MAX_SEARCH_LIMIT}"
                ))
            })? as usize,
    };
    Ok((query.to_string(), limit))
}

/// Runs the search in `org_id`'s knowledge base only.
pub async fn run(
    kb: Arc<KnowledgeBase>,
    org_id: Uuid,
    query: String,
    limit: usize,
) -> Result<ToolOutput, ToolError> {
    let started = Instant::now();
    let hits = kb
        .search(org_id, &query, limit)
        .await
        .map_err(|e| match e {
            KbError::Invalid(m) => ToolError::InvalidArguments(m),
            other => ToolError::Storage(other.to_string()),
        })?;
    let output = if hits.is_empty() {
        format!("No passages in the knowledge base match \"{query}\".")
    } else {
        let mut out = String::new();
        for (i, h) in hits.iter().enumerate() {
            out.push_str(&format!(
                "[{}] \"{}\" (document {}, passage {}, similarity {:.2})\n{}\n\n",
                i + 1,
                h.title,
                h.document_id,
                h.ordinal + 1,
                h.similarity,
                h.content.trim()
            ));
        }
        out.trim_end().to_string()
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
        assert_eq!(
            parse(&json!({"query": " disk full "})).unwrap(),
            ("disk full".into(), 5)
        );
        assert_eq!(parse(&json!({"query": "x", "limit": 2})).unwrap().1, 2);
        assert!(parse(&json!({"query": ""})).is_err());
        assert!(parse(&json!({"limit": 2})).is_err());
        assert!(parse(&json!({"query": "x", "limit": 0})).is_err());
        assert!(parse(&json!({"query": "x", "limit": "3"})).is_err());
    }
}
