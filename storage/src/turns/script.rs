//! Statement text for SQLite's batch of turns: rows as `VALUES` lists of bound parameters.
//!
//! Every list is padded with NULL rows (of the first row's types; they join nothing) up to a
//! power of two, so the texts are few (one per mix of padded list sizes, far under the
//! statement cache's 1024) and stay compiled in the connection's statement cache.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Value;

/// Most rows in one `VALUES` list: the widest row (a usage row, ten values) stays far under
/// SQLite's 32 766 bound values per statement.
pub(super) const MAX_ROWS: usize = 2048;

/// SQL text and its bound values, in the order of their `?`s.
pub(super) struct Script {
    pub sql: String,
    pub values: Vec<Value>,
}

impl Script {
    pub(super) fn new(sql: &str) -> Script {
        Script {
            sql: sql.to_string(),
            values: Vec::new(),
        }
    }

    /// Appends `head (VALUES ...) AS v tail` for every `MAX_ROWS` of `rows` (nothing when there
    /// are none). `head` has one `?`, bound to `now`.
    pub(super) fn statement(
        &mut self,
        head: &str,
        now: DateTime<Utc>,
        rows: Vec<Vec<Value>>,
        tail: &str,
    ) {
        let Some(nulls) = rows
            .first()
            .map(|r| r.iter().map(Value::as_null).collect::<Vec<_>>())
        else {
            return;
        };
        let placeholders = format!("({}?)", "?,".repeat(nulls.len() - 1));
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            self.sql.push_str(head);
            self.values.push(now.into());
            self.sql.push_str("(VALUES ");
            let mut n: usize = 0;
            for row in rows.by_ref().take(MAX_ROWS) {
                debug_assert_eq!(row.len(), nulls.len());
                self.values.extend(row);
                n += 1;
            }
            let padded = n.next_power_of_two().min(MAX_ROWS);
            for _ in n..padded {
                self.values.extend(nulls.iter().cloned());
            }
            for i in 0..padded {
                if i > 0 {
                    self.sql.push(',');
                }
                self.sql.push_str(&placeholders);
            }
            self.sql.push_str(") AS v");
            self.sql.push_str(tail);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_padded_to_a_power_of_two_and_split_at_the_limit() {
        let row = || vec![Value::Int(Some(1)), Value::String(Some("a".into()))];
        let mut s = Script::new("");
        s.statement("X ", Utc::now(), (0..3).map(|_| row()).collect(), " Y;");
        assert_eq!(s.sql, "X (VALUES (?,?),(?,?),(?,?),(?,?)) AS v Y;");
        assert_eq!(s.values.len(), 1 + 4 * 2);
        assert_eq!(s.values[7], Value::Int(None));
        assert_eq!(s.values[8], Value::String(None));

        let mut s = Script::new("");
        s.statement(
            "X ",
            Utc::now(),
            (0..MAX_ROWS + 1).map(|_| row()).collect(),
            ";",
        );
        assert_eq!(s.sql.matches("X (VALUES").count(), 2);
        assert!(s.sql.ends_with(";X (VALUES (?,?)) AS v;"));
        assert_eq!(s.values.len(), 2 + (MAX_ROWS + 1) * 2);

        let mut s = Script::new("");
        s.statement("X ", Utc::now(), Vec::new(), "");
        assert!(s.sql.is_empty() && s.values.is_empty());
    }
}
