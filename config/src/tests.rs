use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_the_embedded_node() {
    let c = Config::from_sources(None, env(&[])).unwrap();
    assert_eq!(c.http_port, 5080);
    assert_eq!(c.ws_port, 5006);
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(
        c.database,
        DatabaseConfig::Sqlite {
            url: "sqlite://./data/aurora.db?mode=rwc".into()
        }
    );
    assert!(!c.allow_registration, "registration is closed by default");
    assert_eq!(c.chat.session_hibernate_secs, 60);
    assert_eq!(c.chat.session_idle_secs, 1800);
}

#[test]
fn env_overrides_file() {
    let file = "http_port = 7000\nws_port = 7001\n";
    let c = Config::from_sources(
        Some((file, Path::new("a.toml"))),
        env(&[("HTTP_PORT", "7100")]),
    )
    .unwrap();
    assert_eq!(c.http_port, 7100);
    assert_eq!(c.ws_port, 7001);
}

#[test]
fn unknown_file_key_is_named() {
    let err =
        Config::from_sources(Some(("http_prot = 1", Path::new("a.toml"))), env(&[])).unwrap_err();
    assert!(err.to_string().contains("http_prot"), "{err}");
}

#[test]
fn unknown_aurora_env_var_is_named() {
    let err = Config::from_sources(None, env(&[("AURORA_DATA_DRI", "x")])).unwrap_err();
    assert!(err.to_string().contains("AURORA_DATA_DRI"), "{err}");
}

#[test]
fn bad_value_is_named() {
    let err = Config::from_sources(None, env(&[("HTTP_PORT", "eighty")])).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("HTTP_PORT") && text.contains("eighty"),
        "{text}"
    );
    let err = Config::from_sources(None, env(&[("HTTP_PORT", "70000")])).unwrap_err();
    assert!(err.to_string().contains("HTTP_PORT"));
    let err =
        Config::from_sources(None, env(&[("AURORA_ALLOW_REGISTRATION", "maybe")])).unwrap_err();
    assert!(err.to_string().contains("AURORA_ALLOW_REGISTRATION"));
    let err = Config::from_sources(None, env(&[("DATABASE_URL", "mysql://x")])).unwrap_err();
    assert!(err.to_string().contains("DATABASE_URL"));
    let err = Config::from_sources(None, env(&[("LLM_PROVIDER", "gpt")])).unwrap_err();
    assert!(err.to_string().contains("LLM_PROVIDER"));
    let err =
        Config::from_sources(None, env(&[("AURORA_METRICS_TOKEN", "short-token")])).unwrap_err();
    assert!(
        err.to_string().contains("AURORA_METRICS_TOKEN")
            && !err.to_string().contains("short-token")
    );
    for key in [
        "AURORA_SIGNIN_PER_ADDR",
        "AURORA_SIGNIN_PER_ACCOUNT",
        "AURORA_SIGNIN_WINDOW_SECS",
        "AURORA_HASH_SLOTS",
    ] {
        let err = Config::from_sources(None, env(&[(key, "0")])).unwrap_err();
        assert!(err.to_string().contains(key), "{err}");
    }
    let err = Config::from_sources(None, env(&[("SECRET_KEY", "short")])).unwrap_err();
    assert!(err.to_string().contains("SECRET_KEY") && !err.to_string().contains("short"));
    for bad in ["0", "soon"] {
        let err =
            Config::from_sources(None, env(&[("AURORA_SESSION_HIBERNATE_SECS", bad)])).unwrap_err();
        assert!(
            err.to_string().contains("AURORA_SESSION_HIBERNATE_SECS"),
            "{err}"
        );
    }
}

#[test]
fn numeric_looking_strings_stay_strings() {
    let c =
        Config::from_sources(None, env(&[("LLM_MODEL", "4"), ("S3_ACCESS_KEY", "0123")])).unwrap();
    assert_eq!(c.llm_model.as_deref(), Some("4"));
    assert_eq!(c.s3_access_key.as_deref(), Some("0123"));
}

#[test]
fn postgres_parts_build_a_url() {
    let c = Config::from_sources(
        None,
        env(&[
            ("POSTGRES_HOST", "db"),
            ("POSTGRES_USER", "u"),
            ("POSTGRES_PASSWORD", "p@ss"),
            ("POSTGRES_DB", "aurora_db"),
        ]),
    )
    .unwrap();
    assert_eq!(c.database.url(), "postgres://u:p%40ss@db:5432/aurora_db");
    let err = Config::from_sources(
        None,
        env(&[("POSTGRES_HOST", "db"), ("DATABASE_URL", "postgres://x/y")]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("POSTGRES_HOST"));
}

#[test]
fn describe_masks_secrets() {
    let c = Config::from_sources(
        None,
        env(&[
            ("DATABASE_URL", "postgres://aurora:hunter2@db/aurora"),
            ("REDIS_URL", "redis://:redispw@cache:6379/0"),
            ("VAULT_TOKEN", "vault-root-token"),
            ("S3_SECRET_KEY", "s3-secret"),
            ("LLM_API_KEY", "sk-live-123"),
            ("SECRET_KEY", "0123456789abcdef0123456789abcdef"),
        ]),
    )
    .unwrap();
    let text = format!("{:?}", c.describe());
    for secret in [
        "hunter2",
        "redispw",
        "vault-root-token",
        "s3-secret",
        "sk-live-123",
        "0123456789abcdef",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(text.contains("postgres://aurora:***@db/aurora"), "{text}");
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn node_names_are_checked() {
    let c = Config::from_sources(None, env(&[("NODE_NAME", "node-a@10.0.0.1:5080")])).unwrap();
    assert_eq!(c.node_name.as_deref(), Some("node-a@10.0.0.1:5080"));
    assert!(Config::from_sources(None, env(&[]))
        .unwrap()
        .node_name
        .is_none());
    for bad in ["has space", "semi;colon", &"x".repeat(101)] {
        let err = Config::from_sources(None, env(&[("NODE_NAME", bad)])).unwrap_err();
        assert!(err.to_string().contains("NODE_NAME"), "{bad:?}: {err}");
    }
}

/// What a clustered node needs besides its cluster settings.
const SHARED: [(&str, &str); 6] = [
    ("REDIS_URL", "redis://127.0.0.1:6379/0"),
    ("DATABASE_URL", "postgres://aurora@127.0.0.1/aurora"),
    ("SECRET_KEY", "0123456789abcdef0123456789abcdef"),
    ("CLUSTER_TLS_CERT", "/etc/aurora/node.pem"),
    ("CLUSTER_TLS_KEY", "/etc/aurora/node.key"),
    ("CLUSTER_TLS_CA", "/etc/aurora/ca.pem"),
];

const COOKIE: &str = "s3cret-cookie-s3cret-cookie-s3cret";

fn clustered(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars = SHARED.to_vec();
    vars.extend_from_slice(extra);
    env(&vars)
}

#[test]
fn clustering_needs_a_cookie_and_well_formed_seeds() {
    let c = Config::from_sources(
        None,
        clustered(&[
            ("CLUSTER_PORT", "7101"),
            ("CLUSTER_SEEDS", "127.0.0.1:7102, node-c:7103"),
            ("CLUSTER_COOKIE", COOKIE),
        ]),
    )
    .unwrap();
    assert!(c.cluster.enabled());
    assert_eq!(c.cluster.port, Some(7101));
    assert_eq!(c.cluster.seeds, vec!["127.0.0.1:7102", "node-c:7103"]);
    let described = format!("{:?}", c.describe());
    assert!(!described.contains("s3cret-cookie"), "{described}");
    assert!(c.cluster.tls.is_some());
    assert!(!Config::from_sources(None, env(&[]))
        .unwrap()
        .cluster
        .enabled());

    let refused = [
        (vec![("CLUSTER_PORT", "7101")], "CLUSTER_COOKIE"),
        (
            vec![
                ("CLUSTER_PORT", "7101"),
                ("CLUSTER_COOKIE", "short-cookie-of-20ch"),
            ],
            "CLUSTER_COOKIE",
        ),
        (vec![("CLUSTER_SEEDS", "127.0.0.1:7102")], "CLUSTER_SEEDS"),
        (
            vec![
                ("CLUSTER_PORT", "7101"),
                ("CLUSTER_COOKIE", COOKIE),
                ("CLUSTER_SEEDS", "no-port"),
            ],
            "CLUSTER_SEEDS",
        ),
        (vec![("CLUSTER_PORT", "70000")], "CLUSTER_PORT"),
        (
            vec![
                ("CLUSTER_PORT", "7101"),
                ("CLUSTER_COOKIE", COOKIE),
                ("AURORA_BIND_ADDR", "0.0.0.0"),
            ],
            "AURORA_BIND_ADDR",
        ),
    ];
    for (vars, key) in refused {
        let err = Config::from_sources(None, clustered(&vars)).unwrap_err();
        assert!(err.to_string().contains(key), "{vars:?}: {err}");
    }
    // A clustered node refuses to start without what the nodes share, naming what is missing.
    let node = [("CLUSTER_PORT", "7101"), ("CLUSTER_COOKIE", COOKIE)];
    for missing in [
        "REDIS_URL",
        "DATABASE_URL",
        "SECRET_KEY",
        "CLUSTER_TLS_CERT",
    ] {
        let mut vars: Vec<(&str, &str)> = SHARED
            .iter()
            .copied()
            .filter(|(k, _)| {
                *k != missing && !(missing == "CLUSTER_TLS_CERT" && k.starts_with("CLUSTER_TLS"))
            })
            .collect();
        vars.extend_from_slice(&node);
        let err = Config::from_sources(None, env(&vars)).unwrap_err();
        assert!(err.to_string().contains(missing), "{missing}: {err}");
    }
    // Half a TLS identity is refused too.
    let mut vars: Vec<(&str, &str)> = SHARED
        .iter()
        .copied()
        .filter(|(k, _)| *k != "CLUSTER_TLS_CA")
        .collect();
    vars.extend_from_slice(&node);
    let err = Config::from_sources(None, env(&vars)).unwrap_err();
    assert!(err.to_string().contains("CLUSTER_TLS"), "{err}");
}
#[test]
fn secret_store_keys() {
    let c = Config::from_sources(None, env(&[])).unwrap();
    assert_eq!(c.vault_kv_mount, "aurora");
    assert!(!c.host_cloud_config);
    let c = Config::from_sources(
        None,
        env(&[
            ("VAULT_ADDR", "http://127.0.0.1:8200"),
            ("VAULT_TOKEN", "root"),
            ("VAULT_KV_MOUNT", "team-secrets"),
            ("AURORA_HOST_CLOUD_CONFIG", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(c.vault_kv_mount, "team-secrets");
    assert!(c.host_cloud_config);
    // Vault without a token, or with one left empty, is refused by name.
    for vars in [
        vec![("VAULT_ADDR", "http://127.0.0.1:8200")],
        vec![("VAULT_ADDR", "http://127.0.0.1:8200"), ("VAULT_TOKEN", "")],
    ] {
        let err = Config::from_sources(None, env(&vars)).unwrap_err();
        assert!(err.to_string().contains("VAULT_TOKEN"), "{vars:?}: {err}");
    }
    for mount in ["a/b", "../sys", "kv v2", &"m".repeat(65)] {
        let err = Config::from_sources(None, env(&[("VAULT_KV_MOUNT", mount)])).unwrap_err();
        assert!(err.to_string().contains("VAULT_KV_MOUNT"), "{mount}: {err}");
    }
    let err =
        Config::from_sources(None, env(&[("AURORA_HOST_CLOUD_CONFIG", "maybe")])).unwrap_err();
    assert!(
        err.to_string().contains("AURORA_HOST_CLOUD_CONFIG"),
        "{err}"
    );
}
