//! What model calls cost: a per-model price table in USD per million tokens, with defaults for
//! common models and overrides from configuration (`AURORA_LLM_PRICES`).

use std::collections::HashMap;

use crate::llm::Usage;

/// Price of one model, USD per million tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

#[derive(Clone, Debug)]
pub struct PriceTable {
    prices: HashMap<String, Price>,
}

/// List prices at the time of writing; configuration overrides or extends them.
const DEFAULTS: &[(&str, f64, f64)] = &[
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("o3-mini", 1.10, 4.40),
    ("claude-sonnet-4", 3.00, 15.00),
    ("claude-3-7-sonnet", 3.00, 15.00),
    ("claude-3-5-haiku", 0.80, 4.00),
    ("claude-opus-4", 15.00, 75.00),
];

impl Default for PriceTable {
    fn default() -> Self {
        let prices = DEFAULTS
            .iter()
            .map(|(m, i, o)| {
                (
                    m.to_string(),
                    Price {
                        input_per_mtok: *i,
                        output_per_mtok: *o,
                    },
                )
            })
            .collect();
        PriceTable { prices }
    }
}

impl PriceTable {
    /// The defaults plus `spec`: `model=input:output` pairs separated by commas, e.g.
    /// `gpt-4o=2.5:10,llama3=0:0`.
    pub fn with_overrides(spec: &str) -> Result<PriceTable, String> {
        let mut table = PriceTable::default();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (model, prices) = entry
                .split_once('=')
                .ok_or_else(|| format!("'{entry}' is not model=input:output"))?;
            let (input, output) = prices
                .split_once(':')
                .ok_or_else(|| format!("'{entry}' is not model=input:output"))?;
            let parse = |v: &str| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|p| p.is_finite() && *p >= 0.0)
            };
            let (Some(input_per_mtok), Some(output_per_mtok)) = (parse(input), parse(output))
            else {
                return Err(format!("'{entry}': prices must be non-negative numbers"));
            };
            table.prices.insert(
                model.trim().to_string(),
                Price {
                    input_per_mtok,
                    output_per_mtok,
                },
            );
        }
        Ok(table)
    }

    /// The price of `model`: an exact entry, else the longest entry the name starts with
    /// (dated releases like `gpt-4o-2024-08-06`, provider prefixes aside).
    pub fn price(&self, model: &str) -> Option<Price> {
        let name = model.rsplit('/').next().unwrap_or(model);
        self.prices.get(name).copied().or_else(|| {
            self.prices
                .iter()
                .filter(|(m, _)| name.starts_with(m.as_str()))
                .max_by_key(|(m, _)| m.len())
                .map(|(_, p)| *p)
        })
    }

    /// The cost of one call in USD; `None` when the model has no price.
    pub fn cost(&self, model: &str, usage: Usage) -> Option<f64> {
        self.price(model).map(|p| {
            (usage.input_tokens as f64 * p.input_per_mtok
                + usage.output_tokens as f64 * p.output_per_mtok)
                / 1_000_000.0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_prefix_and_provider_prefixed_names() {
        let t = PriceTable::default();
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
        };
        assert_eq!(t.cost("gpt-4o", usage), Some(2.5 + 1.0));
        assert_eq!(t.cost("gpt-4o-mini", usage), Some(0.15 + 0.06));
        // Longest prefix wins: a dated gpt-4o-mini is not priced as gpt-4o.
        assert_eq!(t.cost("gpt-4o-mini-2024-07-18", usage), Some(0.15 + 0.06));
        assert_eq!(t.cost("openai/gpt-4o-2024-08-06", usage), Some(3.5));
        assert_eq!(t.cost("mystery-model", usage), None);
    }

    #[test]
    fn overrides_and_bad_specs() {
        let t = PriceTable::with_overrides("llama3=0:0, gpt-4o=5:20").unwrap();
        assert_eq!(
            t.cost(
                "llama3:8b",
                Usage {
                    input_tokens: 10,
                    output_tokens: 10
                }
            ),
            Some(0.0)
        );
        assert_eq!(
            t.price("gpt-4o"),
            Some(Price {
                input_per_mtok: 5.0,
                output_per_mtok: 20.0
            })
        );
        for bad in ["gpt-4o", "gpt-4o=1", "gpt-4o=a:b", "gpt-4o=-1:2"] {
            assert!(PriceTable::with_overrides(bad).is_err(), "{bad}");
        }
    }
}
