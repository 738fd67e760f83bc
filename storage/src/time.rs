//! Timestamp serialization for hot list responses.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// Serializes as RFC 3339 with microseconds and `Z` (`2026-11-28T22:38:46.396873Z`), formatted
/// once into a string. chrono's own `Serialize` streams the text through `collect_str` one
/// character at a time, which showed in profiles of 50-row list responses.
pub fn rfc3339<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ts.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// [`rfc3339`] for an optional timestamp (`null` when absent).
pub fn rfc3339_opt<S: Serializer>(ts: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(ts) => rfc3339(ts, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct T(#[serde(serialize_with = "rfc3339")] DateTime<Utc>);

    #[test]
    fn micros_and_z() {
        let ts = DateTime::parse_from_rfc3339("2026-11-28T22:38:46.3968731+00:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            serde_json::to_string(&T(ts)).unwrap(),
            "\"2026-11-28T22:38:46.396873Z\""
        );
    }
}
