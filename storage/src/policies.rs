//! The command policy gate: which agent commands run freely, which need a human's approval, and
//! which never run. Built-in rules flag destructive verbs; each org adds allow and deny regexes.
//! Precedence: an org deny rule blocks; else an org allow rule lets the command run without
//! approval; else a built-in destructive match needs approval; else it runs.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use regex::{Regex, RegexBuilder};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Principal;
use crate::entities::command_policies;
use crate::{audit, Db, StorageError};

/// Longest pattern accepted, and the compiled-size cap that keeps a hostile regex cheap.
const MAX_PATTERN_LEN: usize = 500;
const MAX_COMPILED_BYTES: usize = 256 * 1024;
/// Most rules one org may hold.
const MAX_RULES: usize = 200;

/// Verbs that change or destroy infrastructure, as whole words.
static DESTRUCTIVE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(delete|destroy|apply|scale|drain|cordon|terminate|rm|rmi|remove|kill|stop|reboot|restart|patch|replace|edit|uninstall|purge|taint|detach|revoke|set-iam-policy|rollback|upgrade)\b",
    )
    .expect("the built-in pattern compiles")
});

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

/// The verdict for `command` under `rules` (org rules, in any order) and the built-ins.
pub fn evaluate(rules: &[(Effect, Regex)], command: &str) -> Verdict {
    if let Some((_, re)) = rules
        .iter()
        .find(|(e, re)| *e == Effect::Deny && re.is_match(command))
    {
        return Verdict::Denied {
            reason: format!("blocked by the organization's rule /{}/", re.as_str()),
        };
    }
    if rules
        .iter()
        .any(|(e, re)| *e == Effect::Allow && re.is_match(command))
    {
        return Verdict::Allowed;
    }
    if let Some(m) = DESTRUCTIVE.find(command) {
        return Verdict::NeedsApproval {
            reason: format!("'{}' changes infrastructure", m.as_str()),
        };
    }
    Verdict::Allowed
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

    /// The verdict for `command` in `org_id`.
    pub async fn check(&self, org_id: Uuid, command: &str) -> Result<Verdict, StorageError> {
        let rules = self
            .list(org_id)
            .await?
            .into_iter()
            .map(|p| Ok((p.effect, compile(&p.pattern)?)))
            .collect::<Result<Vec<_>, StorageError>>()?;
        Ok(evaluate(&rules, command))
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

    #[test]
    fn built_ins_flag_destructive_verbs_as_words() {
        let none = rules(&[]);
        for cmd in [
            "kubectl delete pod web-1",
            "terraform apply -auto-approve",
            "kubectl scale deploy web --replicas=0",
            "kubectl rollout restart deploy/web",
            "aws ec2 terminate-instances --instance-ids i-1",
            "helm uninstall web",
            "rm -rf /tmp/x",
        ] {
            assert!(
                matches!(evaluate(&none, cmd), Verdict::NeedsApproval { .. }),
                "{cmd}"
            );
        }
        for cmd in [
            "kubectl get pods",
            "terraform plan",
            "aws ec2 describe-instances",
            "kubectl logs deleter-7f9",
            "gcloud compute instances list",
        ] {
            assert_eq!(evaluate(&none, cmd), Verdict::Allowed, "{cmd}");
        }
    }

    #[test]
    fn deny_beats_allow_beats_built_ins() {
        let r = rules(&[
            (Effect::Allow, r"^kubectl delete pod \S+ -n sandbox$"),
            (Effect::Deny, r"-n prod\b"),
            (Effect::Deny, r"^aws iam "),
        ]);
        assert_eq!(
            evaluate(&r, "kubectl delete pod web-1 -n sandbox"),
            Verdict::Allowed
        );
        assert!(matches!(
            evaluate(&r, "kubectl get pods -n prod"),
            Verdict::Denied { .. }
        ));
        assert!(matches!(
            evaluate(&r, "aws iam list-users"),
            Verdict::Denied { .. }
        ));
        assert!(matches!(
            evaluate(&r, "kubectl delete pod web-1 -n staging"),
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
