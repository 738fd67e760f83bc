//! What terraform may run. Providers are plugins terraform starts as programs, and two features
//! run arbitrary commands on the node (`data "external"`, `provisioner "local-exec"`), so:
//! - the CLI configuration handed to terraform installs only allowlisted providers, from a
//!   local mirror when one is configured (else from the registry, through the sandbox proxy);
//! - before every run the configuration in the session directory is parsed (HCL and JSON, with
//!   escapes decoded, so spelling tricks do not hide a block) and refused if it uses
//!   `local-exec` or `external`, a provider outside the allowlist, or a module that is not
//!   local, unless the operator allowed command execution.

use std::path::Path;

use hcl::{Body, Expression};

/// A block of either syntax (HCL or JSON), reduced to what the checks read.
#[derive(Debug, Default)]
struct Blk {
    ident: String,
    labels: Vec<String>,
    /// String attributes (`source = "..."`) and objects of them (`aws = { source = ... }`).
    attrs: Vec<(String, Val)>,
    blocks: Vec<Blk>,
}

#[derive(Debug)]
enum Val {
    Str(String),
    Obj(Vec<(String, Val)>),
    Other,
}

/// Providers terraform may install (`namespace/type`, registry.terraform.io implied).
#[derive(Clone, Debug)]
pub struct TerraformPolicy {
    pub providers: Vec<String>,
    /// A filesystem mirror of the allowed providers, bound read-only into the sandbox.
    pub mirror: Option<std::path::PathBuf>,
    /// Lets `local-exec` and `data "external"` through (a single-tenant operator's choice).
    pub allow_exec: bool,
}

impl TerraformPolicy {
    /// The CLI configuration (`TF_CLI_CONFIG_FILE`): allowlisted providers only, no plugin
    /// directories of the host.
    pub fn cli_config(&self) -> String {
        let include: Vec<String> = self
            .providers
            .iter()
            .map(|p| format!("\"registry.terraform.io/{p}\""))
            .collect();
        let include = include.join(", ");
        let source = match &self.mirror {
            Some(m) => format!(
                "  filesystem_mirror {{\n    path    = {:?}\n    include = [{include}]\n  }}\n",
                m.display().to_string()
            ),
            None => format!("  direct {{\n    include = [{include}]\n  }}\n"),
        };
        format!("disable_checkpoint = true\nprovider_installation {{\n{source}}}\n")
    }

    fn provider_allowed(&self, source: &str) -> bool {
        let s = source.trim().to_ascii_lowercase();
        let s = s
            .strip_prefix("registry.terraform.io/")
            .unwrap_or(&s)
            .to_string();
        // `source = "aws"` means hashicorp/aws.
        let s = if s.contains('/') {
            s
        } else {
            format!("hashicorp/{s}")
        };
        self.providers.iter().any(|p| p.eq_ignore_ascii_case(&s))
    }

    /// Checks every `.tf` and `.tf.json` file under `dir` (not `.terraform`).
    pub fn check_dir(&self, dir: &Path) -> Result<(), String> {
        let mut files = Vec::new();
        collect(dir, &mut files, 0).map_err(|e| format!("cannot read the configuration: {e}"))?;
        for (name, text) in files {
            let blocks = if name.ends_with(".tf.json") {
                let v: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| format!("{name}: not valid JSON: {e}"))?;
                json_blocks(&v).map_err(|e| format!("{name}: {e}"))?
            } else {
                let body = hcl::parse(&text).map_err(|e| format!("{name}: not valid HCL: {e}"))?;
                hcl_blocks(&body)
            };
            for b in &blocks {
                self.check_block(b, false)
                    .map_err(|e| format!("{name}: {e}"))?;
            }
        }
        Ok(())
    }

    fn check_block(&self, block: &Blk, nested: bool) -> Result<(), String> {
        let ident = block.ident.as_str();
        let first = block.labels.first().map(String::as_str);
        let exec = !self.allow_exec;
        match (ident, first) {
            ("provisioner", Some("local-exec")) if exec => {
                return Err("provisioner \"local-exec\" runs commands on the node: refused".into())
            }
            ("data", Some("external")) if exec => {
                return Err("data \"external\" runs programs on the node: refused".into())
            }
            ("module", _) if !nested => {
                if let Some(Val::Str(src)) = attr(block, "source") {
                    if !(src.starts_with("./") || src.starts_with("../")) {
                        return Err(format!(
                            "module source {src:?} is not local: only modules written in this session run"
                        ));
                    }
                }
            }
            ("required_providers", _) => {
                for (name, v) in &block.attrs {
                    let source = match v {
                        Val::Obj(fields) => fields.iter().find_map(|(k, v)| match v {
                            Val::Str(s) if k == "source" => Some(s.clone()),
                            _ => None,
                        }),
                        _ => None,
                    }
                    .unwrap_or_else(|| format!("hashicorp/{name}"));
                    if !self.provider_allowed(&source) {
                        return Err(format!(
                            "provider {source:?} is not allowed on this node (allowed: {})",
                            self.providers.join(", ")
                        ));
                    }
                }
            }
            ("resource" | "data", Some(kind)) if !nested => {
                // A resource's type names its provider (`external_x` -> hashicorp/external)
                // unless `provider = ...` says otherwise; `terraform_data` is built in.
                let implied = kind.split('_').next().unwrap_or(kind);
                if implied != "terraform"
                    && !self.provider_allowed(implied)
                    && attr(block, "provider").is_none()
                {
                    return Err(format!(
                        "{ident} {kind:?} needs provider hashicorp/{implied}, which is not allowed on this node"
                    ));
                }
            }
            _ => {}
        }
        for b in &block.blocks {
            self.check_block(b, true)?;
        }
        Ok(())
    }
}

fn attr<'a>(block: &'a Blk, key: &str) -> Option<&'a Val> {
    block.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn hcl_blocks(body: &Body) -> Vec<Blk> {
    body.blocks()
        .map(|b| {
            let inner = &b.body;
            Blk {
                ident: b.identifier().to_string(),
                labels: b.labels().iter().map(|l| l.as_str().to_string()).collect(),
                attrs: inner
                    .attributes()
                    .map(|a| (a.key().to_string(), hcl_val(a.expr())))
                    .collect(),
                blocks: hcl_blocks(inner),
            }
        })
        .collect()
}

fn hcl_val(e: &Expression) -> Val {
    match e {
        Expression::String(s) => Val::Str(s.clone()),
        Expression::Object(o) => Val::Obj(
            o.iter()
                .filter_map(|(k, v)| {
                    let key = match k {
                        hcl::ObjectKey::Identifier(i) => i.to_string(),
                        hcl::ObjectKey::Expression(Expression::String(s)) => s.clone(),
                        _ => return None,
                    };
                    Some((key, hcl_val(v)))
                })
                .collect(),
        ),
        _ => Val::Other,
    }
}

/// Terraform's JSON syntax as the same blocks: `{"resource": {"type": {"name": {...}}}}`;
/// object values inside a block body are nested blocks (`provisioner`, `required_providers`)
/// and also object attributes (`aws = {source = ...}` inside `required_providers`).
fn json_blocks(v: &serde_json::Value) -> Result<Vec<Blk>, String> {
    let obj = v.as_object().ok_or("the top level must be an object")?;
    let mut out = Vec::new();
    for (ident, inner) in obj {
        let depth = match ident.as_str() {
            "resource" | "data" => 2,
            "module" | "provider" | "variable" | "output" => 1,
            _ => 0,
        };
        for (labels, body) in flatten(inner, depth) {
            out.push(json_block(ident, labels, &body));
        }
    }
    Ok(out)
}

fn json_block(ident: &str, labels: Vec<String>, body: &serde_json::Value) -> Blk {
    let mut blk = Blk {
        ident: ident.to_string(),
        labels,
        ..Blk::default()
    };
    let Some(o) = body.as_object() else {
        return blk;
    };
    for (k, val) in o {
        match val {
            serde_json::Value::String(s) => blk.attrs.push((k.clone(), Val::Str(s.clone()))),
            serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                // `provisioner` bodies carry their type as a label: one level of labels.
                let depth = usize::from(k == "provisioner");
                for (labels, inner) in flatten(val, depth) {
                    blk.blocks.push(json_block(k, labels, &inner));
                }
                blk.attrs.push((k.clone(), json_val(val)));
            }
            _ => blk.attrs.push((k.clone(), Val::Other)),
        }
    }
    blk
}

fn json_val(v: &serde_json::Value) -> Val {
    match v {
        serde_json::Value::String(s) => Val::Str(s.clone()),
        serde_json::Value::Object(o) => {
            Val::Obj(o.iter().map(|(k, v)| (k.clone(), json_val(v))).collect())
        }
        _ => Val::Other,
    }
}

/// `depth` levels of labels above each block body (arrays of bodies allowed at each level).
fn flatten(v: &serde_json::Value, depth: usize) -> Vec<(Vec<String>, serde_json::Value)> {
    let items: Vec<&serde_json::Value> = match v {
        serde_json::Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    if depth == 0 {
        return items.into_iter().map(|i| (vec![], i.clone())).collect();
    }
    let mut out = Vec::new();
    for item in items {
        if let Some(o) = item.as_object() {
            for (k, inner) in o {
                for (mut labels, body) in flatten(inner, depth - 1) {
                    labels.insert(0, k.clone());
                    out.push((labels, body));
                }
            }
        }
    }
    out
}

fn collect(dir: &Path, out: &mut Vec<(String, String)>, depth: usize) -> std::io::Result<()> {
    if depth > 8 {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ft = entry.file_type()?;
        if ft.is_dir() && name != ".terraform" {
            collect(&entry.path(), out, depth + 1)?;
        } else if ft.is_file() && (name.ends_with(".tf") || name.ends_with(".tf.json")) {
            let bytes = std::fs::read(entry.path())?;
            out.push((name, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TerraformPolicy {
        TerraformPolicy {
            providers: ["hashicorp/aws", "hashicorp/null", "hashicorp/random"]
                .map(String::from)
                .to_vec(),
            mirror: None,
            allow_exec: false,
        }
    }

    fn check(files: &[(&str, &str)]) -> Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        for (n, t) in files {
            std::fs::write(dir.path().join(n), t).unwrap();
        }
        policy().check_dir(dir.path())
    }

    #[test]
    fn refuses_commands_and_unlisted_providers() {
        let bad = [
            r#"resource "null_resource" "x" { provisioner "local-exec" { command = "id" } }"#,
            r#"resource "null_resource" "x" { provisioner "local\u002dexec" { command = "id" } }"#,
            r#"data "external" "x" { program = ["sh", "-c", "cat /etc/passwd"] }"#,
            "terraform {\n  required_providers {\n    evil = { source = \"evilcorp/evil\" }\n  }\n}\n",
            r#"module "m" { source = "git::https://example.com/m.git" }"#,
            r#"resource "external_thing" "x" {}"#,
        ];
        for b in bad {
            assert!(check(&[("main.tf", b)]).is_err(), "{b}");
        }
        let json_bad = [
            r#"{"data": {"external": {"x": {"program": ["id"]}}}}"#,
            r#"{"resource": {"null_resource": {"x": {"provisioner": {"local-exec": {"command": "id"}}}}}}"#,
            r#"{"resource": {"null_resource": {"x": {"provisioner": [{"local\u002dexec": {"command": "id"}}]}}}}"#,
            r#"{"terraform": {"required_providers": {"evil": {"source": "evilcorp/evil"}}}}"#,
        ];
        for b in json_bad {
            assert!(check(&[("main.tf.json", b)]).is_err(), "{b}");
        }
    }

    #[test]
    fn ordinary_configuration_passes() {
        let ok = r#"
terraform {
  required_providers {
    aws = { source = "hashicorp/aws" }
  }
}
provider "aws" { region = "us-east-1" }
resource "aws_s3_bucket" "b" { bucket = "x" }
resource "null_resource" "n" {}
module "local" { source = "./modules/m" }
"#;
        check(&[("main.tf", ok)]).unwrap();
        check(&[(
            "main.tf.json",
            r#"{"resource": {"aws_instance": {"web": {"ami": "ami-1"}}}}"#,
        )])
        .unwrap();
        let cfg = policy().cli_config();
        assert!(cfg.contains("registry.terraform.io/hashicorp/aws"));
        assert!(!cfg.contains("external"));
    }
}
