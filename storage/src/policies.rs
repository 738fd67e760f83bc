//! The command policy gate: which agent commands run freely, which need a human's approval, and
//! which never run. Each command is classified from its CLI, subcommand and flags (an
//! allowlist of known reads: anything not known to be a read is at least a write; see
//! [`crate::classify`]); each org adds allow and deny regexes over the command text.
//! Precedence: a forbidden command never runs; an org deny rule blocks; a read runs; in ask
//! mode and background runs nothing else runs; in agent mode an org allow rule lets a write
//! run without approval, and every other write or destructive command needs a human's approval.

use chrono::{DateTime, Utc};
use regex::{Regex, RegexBuilder};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Principal;
use crate::classify::{Class, Classification};
use crate::entities::command_policies;
use crate::{audit, Db, StorageError};

/// Longest pattern accepted, and the compiled-size cap that keeps a hostile regex cheap.
const MAX_PATTERN_LEN: usize = 500;
const MAX_COMPILED_BYTES: usize = 256 * 1024;
/// Most rules one org may hold.
const MAX_RULES: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CommandPolicy {
    pub id: Uuid,
    pub effect: Effect,
    pub pattern: String,
    pub description: Option<String>,
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub created_at: DateTime<Utc>,
}

/// What the gate says about one command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Allowed,
    NeedsApproval { reason: String },
    Denied { reason: String },
}

/// Compiles a user-supplied pattern with a size cap.
fn compile(pattern: &str) -> Result<Regex, StorageError> {
    if pattern.is_empty() || pattern.len() > MAX_PATTERN_LEN {
        return Err(StorageError::invalid(
            "pattern",
            format!("must be 1 to {MAX_PATTERN_LEN} characters"),
        ));
    }
    RegexBuilder::new(pattern)
        .size_limit(MAX_COMPILED_BYTES)
        .build()
        .map_err(|e| {
            StorageError::invalid("pattern", format!("not a valid regular expression: {e}"))
        })
}

/// Who is asking: what a turn's mode allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GateMode {
    /// A human in ask mode (or a viewer): reads only.
    Ask,
    /// A human in agent mode: reads run, the rest asks (or runs under an org allow rule).
    Agent,
    /// A background run (incident analysis): nobody to ask, so reads only.
    Background,
}

/// The gate's answer for one command: its class and what happens to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gate {
    pub class: Class,
    /// Why the command has its class (`kubectl delete` destroys resources).
    pub reason: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The verdict for a command (`argv`, shown as `command`) of class `c` under `rules` (org
/// rules, in any order) in `mode`.
pub fn evaluate(
    rules: &[(Effect, Regex)],
    command: &str,
    c: Classification,
    mode: GateMode,
) -> Gate {
    let verdict = if c.class == Class::Forbidden {
        Verdict::Denied {
            reason: c.reason.clone(),
        }
    } else if let Some((_, re)) = rules
        .iter()
        .find(|(e, re)| *e == Effect::Deny && re.is_match(command))
    {
        Verdict::Denied {
            reason: format!("blocked by the organization's rule /{}/", re.as_str()),
        }
    } else if c.class == Class::Read {
        Verdict::Allowed
    } else {
        match mode {
            GateMode::Ask => Verdict::Denied {
                reason: format!("ask mode only reads, and {}", c.reason),
            },
            GateMode::Background => Verdict::Denied {
                reason: format!("background runs only read, and {}", c.reason),
            },
            GateMode::Agent
                if rules
                    .iter()
                    .any(|(e, re)| *e == Effect::Allow && re.is_match(command)) =>
            {
                Verdict::Allowed
            }
            GateMode::Agent => Verdict::NeedsApproval {
                reason: c.reason.clone(),
            },
        }
    };
    Gate {
        class: c.class,
        reason: c.reason,
        verdict,
    }
}

#[derive(Clone, Debug)]
pub struct Policies {
    db: Db,
}

impl Policies {
    pub fn new(db: Db) -> Policies {
        Policies { db }
    }

    pub async fn list(&self, org_id: Uuid) -> Result<Vec<CommandPolicy>, StorageError> {
        let tx = self.db.org(org_id).await?;
        let rows = tx
            .select::<command_policies::Entity>()
            .order_by_asc(command_policies::Column::CreatedAt)
            .all(tx.conn())
            .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|r| {
                let effect = match r.effect.as_str() {
                    "allow" => Effect::Allow,
                    "deny" => Effect::Deny,
                    other => {
                        return Err(StorageError::Internal(format!(
                            "stored policy effect '{other}'"
                        )))
                    }
                };
                Ok(CommandPolicy {
                    id: r.id,
                    effect,
                    pattern: r.pattern,
                    description: r.description,
                    created_at: r.created_at,
                })
            })
            .collect()
    }

    pub async fn create(
        &self,
        by: &Principal,
        effect: Effect,
        pattern: &str,
        description: Option<&str>,
    ) -> Result<CommandPolicy, StorageError> {
        compile(pattern)?;
        if let Some(d) = description {
            if d.chars().count() > 500 {
                return Err(StorageError::invalid(
                    "description",
                    "at most 500 characters",
                ));
            }
        }
        let tx = self.db.org(by.org_id).await?;
        let count = tx
            .select::<command_policies::Entity>()
            .all(tx.conn())
            .await?
            .len();
        if count >= MAX_RULES {
            return Err(StorageError::invalid(
                "pattern",
                format!("an organization holds at most {MAX_RULES} rules"),
            ));
        }
        let row = command_policies::ActiveModel {
            id: Set(Uuid::now_v7()),
            org_id: Set(by.org_id),
            effect: Set(effect.as_str().into()),
            pattern: Set(pattern.into()),
            description: Set(description.map(str::to_string)),
            created_by: Set(Some(by.user_id)),
            created_at: Set(Utc::now()),
        };
        let m = command_policies::Entity::insert(row)
            .exec_with_returning(tx.conn())
            .await?;
        audit::record(
            tx.conn(),
            by.org_id,
            Some(by.user_id),
            "policy.create",
            Some(pattern),
            serde_json::json!({ "effect": effect }),
        )
        .await?;
        tx.commit().await?;
        Ok(CommandPolicy {
            id: m.id,
            effect,
            pattern: m.pattern,
            description: m.description,
            created_at: m.created_at,
        })
    }

    pub async fn delete(&self, by: &Principal, id: Uuid) -> Result<(), StorageError> {
        let tx = self.db.org(by.org_id).await?;
        let res = command_policies::Entity::delete_many()
            .filter(tx.org_filter::<command_policies::Entity>())
            .filter(command_policies::Column::Id.eq(id))
            .exec(tx.conn())
            .await?;
        if res.rows_affected == 0 {
            return Err(StorageError::NotFound("policy"));
        }
        audit::record(
            tx.conn(),
            by.org_id,
            Some(by.user_id),
            "policy.delete",
            Some(&id.to_string()),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The gate's answer for `command` (classified as `c`) in `org_id`.
    pub async fn check(
        &self,
        org_id: Uuid,
        command: &str,
        c: Classification,
        mode: GateMode,
    ) -> Result<Gate, StorageError> {
        let rules = self
            .list(org_id)
            .await?
            .into_iter()
            .map(|p| Ok((p.effect, compile(&p.pattern)?)))
            .collect::<Result<Vec<_>, StorageError>>()?;
        Ok(evaluate(&rules, command, c, mode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[(Effect, &str)]) -> Vec<(Effect, Regex)> {
        list.iter()
            .map(|(e, p)| (*e, compile(p).unwrap()))
            .collect()
    }

    fn gate(r: &[(Effect, Regex)], cmd: &str, mode: GateMode) -> Verdict {
        let argv = shell_words::split(cmd).unwrap();
        evaluate(r, cmd, crate::classify::classify(&argv), mode).verdict
    }

    #[test]
    fn reads_run_everywhere_and_the_rest_asks_or_is_refused() {
        let none = rules(&[]);
        for cmd in [
            "kubectl get pods",
            "aws ec2 describe-instances",
            "kubectl logs deleter-7f9",
        ] {
            for mode in [GateMode::Ask, GateMode::Agent, GateMode::Background] {
                assert_eq!(gate(&none, cmd, mode), Verdict::Allowed, "{cmd} {mode:?}");
            }
        }
        for cmd in [
            "kubectl delete pod web-1",
            "kubectl exec -it web-1 -- sh",
            "kubectl run x --image=busybox",
            "helm install web ./chart",
            "aws iam create-access-key --user-name bob",
            "aws ec2 run-instances --image-id ami-1",
            "gcloud projects add-iam-policy-binding p --member=user:x --role=roles/owner",
        ] {
            assert!(
                matches!(
                    gate(&none, cmd, GateMode::Agent),
                    Verdict::NeedsApproval { .. }
                ),
                "{cmd}"
            );
            for mode in [GateMode::Ask, GateMode::Background] {
                assert!(
                    matches!(gate(&none, cmd, mode), Verdict::Denied { .. }),
                    "{cmd} {mode:?}"
                );
            }
        }
    }

    #[test]
    fn deny_beats_allow_and_forbidden_beats_everything() {
        let r = rules(&[
            (Effect::Allow, r"^kubectl scale "),
            (Effect::Allow, r"^helm plugin "),
            (Effect::Deny, r"-n prod\b"),
            (Effect::Deny, r"^aws iam "),
        ]);
        let agent = GateMode::Agent;
        assert_eq!(
            gate(&r, "kubectl scale deploy web --replicas=2", agent),
            Verdict::Allowed
        );
        // An allow rule relaxes agent mode only: ask mode still reads only.
        assert!(matches!(
            gate(&r, "kubectl scale deploy web --replicas=2", GateMode::Ask),
            Verdict::Denied { .. }
        ));
        assert!(matches!(
            gate(&r, "kubectl get pods -n prod", agent),
            Verdict::Denied { .. }
        ));
        assert!(matches!(
            gate(&r, "aws iam list-users", agent),
            Verdict::Denied { .. }
        ));
        assert!(matches!(
            gate(&r, "helm plugin install https://x/p", agent),
            Verdict::Denied { .. }
        ));
        assert!(matches!(
            gate(&r, "kubectl delete pod web-1 -n staging", agent),
            Verdict::NeedsApproval { .. }
        ));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for p in ["", "(unclosed", "[z-a]", &"a".repeat(501)] {
            assert!(compile(p).is_err(), "{p}");
        }
        // A pattern that compiles to a huge automaton is refused rather than eating memory.
        assert!(compile(r"\w{1000}\w{1000}\w{1000}").is_err());
    }
}
