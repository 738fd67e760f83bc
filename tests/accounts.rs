//! Accounts and tokens an admin controls: closed registration, invitations, members, named
//! tokens, logout, and sign-in limits, each tried as a stranger or a hostile member would.

mod common;

use common::{assert_error, Backend, TestNode};
use reqwest::Method;
use reqwest::StatusCode;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

fn register_body(email: &str, org: &str) -> Value {
    json!({ "email": email, "password": PASSWORD, "org_name": org })
}

/// A node as it is deployed: registration closed (the harness opens it for other tests).
async fn closed_node(backend: Backend) -> TestNode {
    TestNode::start_with(backend, &[("AURORA_ALLOW_REGISTRATION", "false")]).await
}

async fn closed_registration_admits_only_the_first_user(backend: Backend) {
    let t = closed_node(backend).await;
    // The first user of a fresh install becomes its admin.
    let (status, body) = t
        .post(
            "/api/auth/register",
            None,
            register_body("root@acme.io", "Acme"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["user"]["role"], "admin");
    let before = t.row_counts().await;
    // A stranger then cannot make an org (of their own, or of any name).
    for (email, org) in [("eve@evil.io", "Evil"), ("eve2@evil.io", "Acme")] {
        let (status, body) = t
            .post("/api/auth/register", None, register_body(email, org))
            .await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("invitation"),
            "{body}"
        );
    }
    assert_eq!(
        t.row_counts().await,
        before,
        "a refused registration wrote nothing"
    );
    t.stop().await;
}

async fn invitations_bring_members_in_once(backend: Backend) {
    let t = closed_node(backend).await;
    let admin = t.register("root@acme.io", "Acme").await;
    let viewer = t.add_user(&admin, "viewer@acme.io", "viewer").await;

    // Only admins invite; bad bodies are refused and write nothing.
    let (status, body) = t
        .post(
            "/api/org/invitations",
            Some(&viewer),
            json!({ "role": "editor" }),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
    let before = t.row_counts().await;
    for bad in [
        json!({ "role": "owner" }),
        json!({ "role": "editor", "expires_in_hours": 0 }),
        json!({ "role": "editor", "expires_in_hours": 100000 }),
        json!({ "role": "editor", "email": "not-an-email" }),
        json!({ "role": "editor", "extra": 1 }),
    ] {
        let (status, body) = t
            .post("/api/org/invitations", Some(&admin), bad.clone())
            .await;
        assert!(status.is_client_error(), "{bad}: {status} {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    assert_eq!(t.row_counts().await, before);

    let (status, inv) = t
        .post(
            "/api/org/invitations",
            Some(&admin),
            json!({ "role": "editor", "email": "new@acme.io" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{inv}");
    let code = inv["code"].as_str().unwrap().to_string();
    assert!(inv.get("code_hash").is_none(), "{inv}");
    // The list never shows the code again.
    let (_, list) = t.get("/api/org/invitations", Some(&admin)).await;
    assert!(!list.to_string().contains(&code), "{list}");
    assert_eq!(list["invitations"][0]["status"], "open");

    // For another address, a wrong code, or no code: refused, nothing written.
    let before = t.row_counts().await;
    for (c, email, want, code_name) in [
        (
            code.as_str(),
            "other@acme.io",
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
        ),
        (
            "inv_guessed",
            "new@acme.io",
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        ),
        ("", "new@acme.io", StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
    ] {
        let (status, body) = t
            .post(
                "/api/auth/accept-invitation",
                None,
                json!({ "code": c, "email": email, "password": PASSWORD }),
            )
            .await;
        assert_error(status, &body, want, code_name);
    }
    assert_eq!(t.row_counts().await, before);

    let accept = json!({ "code": code, "email": "new@acme.io", "password": PASSWORD });
    let (status, joined) = t
        .post("/api/auth/accept-invitation", None, accept.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{joined}");
    assert_eq!(joined["user"]["role"], "editor");
    let me = t.principal(joined["token"].as_str().unwrap()).await;
    assert_eq!(me.org_id, t.principal(&admin).await.org_id);

    // Single use: the same code again is the same refusal as a guessed one.
    let again = json!({ "code": code, "email": "new2@acme.io", "password": PASSWORD });
    let (status, body) = t.post("/api/auth/accept-invitation", None, again).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(body["error"]["message"], "invalid or expired invitation");

    // A revoked invitation cannot be accepted; an accepted one cannot be revoked.
    let (_, inv2) = t
        .post(
            "/api/org/invitations",
            Some(&admin),
            json!({ "role": "viewer" }),
        )
        .await;
    let id2 = inv2["id"].as_str().unwrap();
    let (status, _) = t
        .call(
            Method::DELETE,
            &format!("/api/org/invitations/{id2}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = t
        .post(
            "/api/auth/accept-invitation",
            None,
            json!({ "code": inv2["code"], "email": "late@acme.io", "password": PASSWORD }),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let id1 = inv["id"].as_str().unwrap();
    let (status, body) = t
        .call(
            Method::DELETE,
            &format!("/api/org/invitations/{id1}"),
            Some(&admin),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");

    // An expired invitation is refused like any other.
    let (_, inv3) = t
        .post(
            "/api/org/invitations",
            Some(&admin),
            json!({ "role": "viewer" }),
        )
        .await;
    expire_invitation(&t, inv3["id"].as_str().unwrap()).await;
    let (status, _) = t
        .post(
            "/api/auth/accept-invitation",
            None,
            json!({ "code": inv3["code"], "email": "slow@acme.io", "password": PASSWORD }),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // An invitation made by an admin who is removed (or demoted) since is void: it cannot be
    // their way back in.
    let second = t.add_user(&admin, "second@acme.io", "admin").await;
    let (_, backdoor) = t
        .post(
            "/api/org/invitations",
            Some(&second),
            json!({ "role": "admin" }),
        )
        .await;
    let second_id = t.principal(&second).await.user_id;
    let (status, _) = t
        .call(
            Method::DELETE,
            &format!("/api/org/members/{second_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = t
        .post(
            "/api/auth/accept-invitation",
            None,
            json!({ "code": backdoor["code"], "email": "back@evil.io", "password": PASSWORD }),
        )
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    t.stop().await;
}

async fn expire_invitation(t: &TestNode, id: &str) {
    use aurora_storage::entities::invitations;
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let id: uuid::Uuid = id.parse().unwrap();
    let past = chrono::Utc::now() - chrono::Duration::hours(1);
    let tx = t.node().db().system().await.unwrap();
    let r = invitations::Entity::update_many()
        .col_expr(invitations::Column::ExpiresAt, Expr::value(past))
        .filter(invitations::Column::Id.eq(id))
        .exec(tx.conn())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(r.rows_affected, 1);
}

async fn admins_manage_members(backend: Backend) {
    // Open registration: a second org takes part below.
    let t = TestNode::start(backend).await;
    let admin = t.register("root@acme.io", "Acme").await;
    let editor = t.add_user(&admin, "ed@acme.io", "editor").await;
    let ed = t.principal(&editor).await;
    let root = t.principal(&admin).await;

    let (status, list) = t.get("/api/org/members", Some(&editor)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["members"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains("password"), "{list}");

    // Only admins change roles; the org always keeps an admin.
    let path = format!("/api/org/members/{}", root.user_id);
    let (status, body) = t
        .call(
            Method::PATCH,
            &path,
            Some(&editor),
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
    let (status, body) = t
        .call(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "CONFLICT");
    let (status, body) = t.call(Method::DELETE, &path, Some(&admin), None).await;
    assert_error(status, &body, StatusCode::CONFLICT, "CONFLICT");

    // A role change holds at once, cache or not.
    let ed_path = format!("/api/org/members/{}", ed.user_id);
    let (status, body) = t
        .call(
            Method::PATCH,
            &ed_path,
            Some(&admin),
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        t.principal(&editor).await.role,
        aurora_storage::auth::Role::Viewer
    );
    for bad in [json!({ "role": "root" }), json!({})] {
        let (status, _) = t
            .call(Method::PATCH, &ed_path, Some(&admin), Some(bad))
            .await;
        assert!(status.is_client_error());
    }
    let (status, _) = t
        .call(
            Method::PATCH,
            "/api/org/members/not-a-uuid",
            Some(&admin),
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Removed: their token stops at once, they cannot log in, their rows stay.
    let (status, _) = t
        .post(
            "/chat_api/sessions",
            Some(&editor),
            json!({ "title": "mine" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = t.call(Method::DELETE, &ed_path, Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = t.get("/api/auth/me", Some(&editor)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = t
        .post(
            "/api/auth/login",
            None,
            json!({ "email": "ed@acme.io", "password": "another good password" }),
        )
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let counts = t.row_counts().await;
    let sessions = counts.iter().find(|(n, _)| n == "chat_sessions").unwrap().1;
    assert_eq!(
        sessions, 1,
        "the removed member's session stays with the org"
    );
    let (_, list) = t.get("/api/org/members", Some(&admin)).await;
    assert_eq!(list["members"].as_array().unwrap().len(), 1);

    // Invited back, the removed member is the same user again (their session is theirs), with
    // the new password; their old token stays dead.
    let (_, inv) = t
        .post(
            "/api/org/invitations",
            Some(&admin),
            json!({ "role": "viewer", "email": "ed@acme.io" }),
        )
        .await;
    let (status, back) = t
        .post(
            "/api/auth/accept-invitation",
            None,
            json!({ "code": inv["code"], "email": "ed@acme.io", "password": PASSWORD }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{back}");
    assert_eq!(back["user"]["id"], ed.user_id.to_string());
    assert_eq!(back["user"]["role"], "viewer");
    let again = back["token"].as_str().unwrap();
    let (_, sessions) = t.get("/chat_api/sessions", Some(again)).await;
    assert_eq!(
        sessions["sessions"].as_array().unwrap().len(),
        1,
        "{sessions}"
    );
    assert_eq!(
        t.get("/api/auth/me", Some(&editor)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Another org's member is "not found", never touched.
    let other = t.register("boss@globex.io", "Globex").await;
    let (status, _) = t.call(Method::DELETE, &path, Some(&other), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // An address in use in another org cannot be invited here.
    let (_, inv) = t
        .post(
            "/api/org/invitations",
            Some(&admin),
            json!({ "role": "viewer", "email": "boss@globex.io" }),
        )
        .await;
    let (status, body) = t
        .post(
            "/api/auth/accept-invitation",
            None,
            json!({ "code": inv["code"], "email": "boss@globex.io", "password": PASSWORD }),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "CONFLICT");
    assert_eq!(
        t.principal(&admin).await.role,
        aurora_storage::auth::Role::Admin
    );
    t.stop().await;
}

async fn tokens_are_listed_revoked_and_logged_out(backend: Backend) {
    let t = TestNode::start_with(backend, &[("AURORA_AUTH_CACHE_SECS", "60")]).await;
    let admin = t.register("root@acme.io", "Acme").await;
    let viewer = t.add_user(&admin, "v@acme.io", "viewer").await;

    let (status, made) = t
        .post(
            "/api/auth/tokens",
            Some(&viewer),
            json!({ "name": "ci", "expires_in_days": 7 }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let ci = made["token"].as_str().unwrap().to_string();
    let ci_id = made["id"].as_str().unwrap().to_string();
    assert_eq!(t.get("/api/auth/me", Some(&ci)).await.0, StatusCode::OK);
    for bad in [
        json!({ "name": "x", "expires_in_days": 0 }),
        json!({ "name": "x", "expires_in_days": 5000 }),
        json!({ "name": "" }),
        json!({ "expires_in_days": 3 }),
    ] {
        let (status, body) = t.post("/api/auth/tokens", Some(&viewer), bad.clone()).await;
        assert!(status.is_client_error(), "{bad}: {status} {body}");
    }

    // Listed without the token; the org's list is for admins.
    let (status, list) = t.get("/api/auth/tokens", Some(&viewer)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!list.to_string().contains(&ci), "{list}");
    assert!(list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["name"] == "ci"));
    let (status, body) = t.get("/api/auth/tokens?all=true", Some(&viewer)).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
    let (status, all) = t.get("/api/auth/tokens?all=true", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    let admin_token_id = all["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["email"] == "root@acme.io")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // A member cannot revoke the admin's token; another org's admin cannot revoke ours.
    let (status, _) = t
        .call(
            Method::DELETE,
            &format!("/api/auth/tokens/{admin_token_id}"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let stranger = t.register("boss@globex.io", "Globex").await;
    let (status, _) = t
        .call(
            Method::DELETE,
            &format!("/api/auth/tokens/{ci_id}"),
            Some(&stranger),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(t.get("/api/auth/me", Some(&ci)).await.0, StatusCode::OK);

    // The admin revokes the member's token: it stops at once, though it was cached.
    let (status, _) = t
        .call(
            Method::DELETE,
            &format!("/api/auth/tokens/{ci_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        t.get("/api/auth/me", Some(&ci)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Logout ends the token it was sent with, and only that one.
    assert_eq!(t.get("/api/auth/me", Some(&viewer)).await.0, StatusCode::OK);
    let (status, _) = t.post("/api/auth/logout", Some(&viewer), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        t.get("/api/auth/me", Some(&viewer)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(t.get("/api/auth/me", Some(&admin)).await.0, StatusCode::OK);
    t.stop().await;
}

on_both_backends!(
    closed_registration_admits_only_the_first_user,
    invitations_bring_members_in_once,
    admins_manage_members,
    tokens_are_listed_revoked_and_logged_out,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_attempts_are_limited_per_account_and_address() {
    // SQLite: the counters are this node's own, so no other test shares them.
    let t = TestNode::start_with(
        Backend::Sqlite,
        &[
            ("AURORA_SIGNIN_PER_ACCOUNT", "3"),
            ("AURORA_SIGNIN_PER_ADDR", "8"),
        ],
    )
    .await;
    let _admin = t.register("root@acme.io", "Acme").await;
    let wrong = json!({ "email": "root@acme.io", "password": "wrong password!" });
    let unknown = json!({ "email": "nobody@acme.io", "password": "wrong password!" });
    // Unknown account and wrong password: one answer.
    let (s1, b1) = t.post("/api/auth/login", None, wrong.clone()).await;
    let (s2, b2) = t.post("/api/auth/login", None, unknown.clone()).await;
    assert_eq!((s1, &b1), (s2, &b2));
    assert_error(s1, &b1, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    // The account's third attempt (the registration counted as its first) is the last.
    let (status, _) = t.post("/api/auth/login", None, wrong.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let resp = t
        .client
        .post(format!("{}/api/auth/login", t.base))
        .json(&json!({ "email": "root@acme.io", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&after), "{after}");
    let (_, body) = common::read(resp).await;
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    // Other accounts from this address go on until the address's own limit.
    let mut statuses = Vec::new();
    for i in 0..5 {
        let (status, _) = t
            .post(
                "/api/auth/login",
                None,
                json!({ "email": format!("guess{i}@acme.io"), "password": "wrong password!" }),
            )
            .await;
        statuses.push(status);
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        3
    );
    assert_eq!(*statuses.last().unwrap(), StatusCode::TOO_MANY_REQUESTS);
    t.stop().await;
}

/// Resident memory of this test process now, in MiB.
fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

/// `n` concurrent logins with wrong passwords for unknown accounts, while a legitimate login
/// is tried; returns the most resident memory seen above where it started (sampled every
/// 2 ms) and the legitimate login's status.
async fn storm(t: &TestNode, n: usize) -> (u64, StatusCode) {
    let base = rss_mib();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::task::spawn_blocking(move || {
            let mut max = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(rss_mib());
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            max
        })
    };
    let mut tasks = Vec::new();
    for i in 0..n {
        let client = t.client.clone();
        let url = format!("{}/api/auth/login", t.base);
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(
                    &json!({ "email": format!("storm{i}@acme.io"), "password": "wrong password!" }),
                )
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    let legit = json!({ "email": "root@acme.io", "password": PASSWORD });
    let (legit_status, _) = t.post("/api/auth/login", None, legit).await;
    for task in tasks {
        let status = task.await.unwrap().unwrap();
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::SERVICE_UNAVAILABLE,
            "{status}"
        );
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    (sampler.await.unwrap().saturating_sub(base), legit_status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_storm_is_hashed_a_few_at_a_time() {
    // Every allocation of 1 MiB or more its own mapping, returned on free: resident memory
    // then shows the argon2 hashes (19 MiB each) alive at once, not what the allocator kept.
    assert_eq!(unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20) }, 1);
    const N: usize = 64;

    // Two slots: a few hashes at a time, and a legitimate login is still served.
    let t = TestNode::start_with(Backend::Sqlite, &[("AURORA_HASH_SLOTS", "2")]).await;
    t.register("root@acme.io", "Acme").await;
    let (bounded, legit) = storm(&t, N).await;
    t.stop().await;
    assert_eq!(legit, StatusCode::OK);

    // As many slots as attempts (no bound): the same storm holds them all at once. Shown
    // second, so nothing the first storm left behind can hide the difference.
    let open = TestNode::start_with(Backend::Sqlite, &[("AURORA_HASH_SLOTS", "1000")]).await;
    open.register("root@acme.io", "Acme").await;
    let (unbounded, _) = storm(&open, N).await;
    open.stop().await;
    eprintln!("peak growth: {bounded} MiB with two slots, {unbounded} MiB without a bound");
    // How many of the unbounded hashes overlap depends on the machine's load: the margins
    // are wide (19 MiB each; two slots hold at most ~40 MiB of them).
    assert!(
        unbounded > 150,
        "the unbounded storm grew only {unbounded} MiB"
    );
    assert!(
        bounded < 120 && bounded * 3 < unbounded,
        "with two slots the storm grew {bounded} MiB (unbounded: {unbounded} MiB)"
    );
}
