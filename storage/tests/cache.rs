//! The cache's semantics, the same on real Redis and in process.

use std::time::Duration;

use aurora_storage::cache::{Cache, RateDecision};
use aurora_storage::redis::RedisPool;

fn redis() -> Cache {
    let url = std::env::var("AURORA_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    Cache::Redis(RedisPool::new(&url).unwrap())
}

/// A key no other test or run shares.
fn key(name: &str) -> String {
    format!("aurora:test:{name}:{}", uuid::Uuid::new_v4().simple())
}

async fn claims_are_single_use_until_they_expire(cache: Cache) {
    let k = key("claim");
    assert!(cache
        .claim_once(&k, Duration::from_millis(300))
        .await
        .unwrap());
    assert!(!cache
        .claim_once(&k, Duration::from_millis(300))
        .await
        .unwrap());
    assert!(cache
        .claim_once(&key("other"), Duration::from_secs(5))
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        cache
            .claim_once(&k, Duration::from_millis(300))
            .await
            .unwrap(),
        "free again after expiry"
    );
}

async fn concurrent_claims_have_one_winner(cache: Cache) {
    let k = key("race");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (cache, k) = (cache.clone(), k.clone());
            tokio::spawn(async move { cache.claim_once(&k, Duration::from_secs(5)).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        winners += t.await.unwrap() as u32;
    }
    assert_eq!(winners, 1);
}

async fn rate_limit_slides(cache: Cache) {
    let k = key("rate");
    let window = Duration::from_millis(500);
    for left in (0..3).rev() {
        assert_eq!(
            cache.rate_limit(&k, 3, window).await.unwrap(),
            RateDecision::Allowed { remaining: left }
        );
    }
    match cache.rate_limit(&k, 3, window).await.unwrap() {
        RateDecision::Limited { retry_after } => assert!(
            retry_after <= window && !retry_after.is_zero(),
            "{retry_after:?}"
        ),
        other => panic!("expected limited, got {other:?}"),
    }
    // A refused action is not counted: after the window everything is allowed again.
    tokio::time::sleep(window + Duration::from_millis(50)).await;
    assert!(matches!(
        cache.rate_limit(&k, 3, window).await.unwrap(),
        RateDecision::Allowed { remaining: 2 }
    ));
    // Other keys are independent.
    assert!(matches!(
        cache.rate_limit(&key("rate2"), 1, window).await.unwrap(),
        RateDecision::Allowed { remaining: 0 }
    ));
}

async fn concurrent_actions_never_exceed_the_limit(cache: Cache) {
    let k = key("rate-race");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (cache, k) = (cache.clone(), k.clone());
            tokio::spawn(async move {
                cache
                    .rate_limit(&k, 5, Duration::from_secs(60))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        allowed += matches!(t.await.unwrap(), RateDecision::Allowed { .. }) as u32;
    }
    assert_eq!(allowed, 5);
}

async fn running_totals(cache: Cache) {
    let k = key("cost");
    assert_eq!(cache.get_f64(&k).await.unwrap(), None);
    assert!((cache.add_f64(&k, 0.25).await.unwrap() - 0.25).abs() < 1e-9);
    assert!((cache.add_f64(&k, 0.5).await.unwrap() - 0.75).abs() < 1e-9);
    cache
        .raise_f64(&k, 2.0, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get_f64(&k).await.unwrap(), Some(2.0));
    // A smaller (older) total never replaces a larger one.
    cache
        .raise_f64(&k, 1.5, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get_f64(&k).await.unwrap(), Some(2.0));
    cache
        .raise_f64(&k, 3.0, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(cache.get_f64(&k).await.unwrap(), Some(3.0));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(cache.get_f64(&k).await.unwrap(), None, "expired");
    cache.remove(&k).await.unwrap();
    assert_eq!(cache.get_f64(&k).await.unwrap(), None);
    // Several totals at once (the turn writer's batch): each only rises; none is nothing.
    let (a, b) = (key("cost-a"), key("cost-b"));
    cache
        .raise_f64(&a, 5.0, Duration::from_secs(60))
        .await
        .unwrap();
    let items = [(a.clone(), 4.0), (b.clone(), 1.0)];
    cache
        .raise_f64_many(&items, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(cache.get_f64(&a).await.unwrap(), Some(5.0));
    assert_eq!(cache.get_f64(&b).await.unwrap(), Some(1.0));
    cache
        .raise_f64_many(&[], Duration::from_secs(60))
        .await
        .unwrap();
}

macro_rules! on_both {
    ($($name:ident),*) => {
        mod redis_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::redis()).await })*
        }
        mod local_backend {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(aurora_storage::cache::Cache::local()).await })*
        }
    };
}

on_both!(
    claims_are_single_use_until_they_expire,
    concurrent_claims_have_one_winner,
    rate_limit_slides,
    concurrent_actions_never_exceed_the_limit,
    running_totals
);

mod tickets {
    use std::time::Duration;

    use aurora_storage::auth::{Principal, Role};
    use aurora_storage::cache::Cache;
    use aurora_storage::tickets::Tickets;

    fn who() -> Principal {
        Principal {
            user_id: uuid::Uuid::now_v7(),
            org_id: uuid::Uuid::now_v7(),
            email: "a@acme.io".into(),
            role: Role::Editor,
        }
    }

    #[tokio::test]
    async fn a_ticket_works_once_on_any_node() {
        // Two nodes: the same secret and the same Redis.
        let secret = b"0123456789abcdef0123456789abcdef";
        let node_a = Tickets::new(secret, super::redis(), Duration::from_secs(120));
        let node_b = Tickets::new(secret, super::redis(), Duration::from_secs(120));
        let p = who();
        let t = node_a.issue(&p).unwrap();
        assert_eq!(node_b.redeem(&t.token).await.unwrap(), p);
        let err = node_a.redeem(&t.token).await.unwrap_err();
        assert!(err.to_string().contains("already used"), "{err}");
    }

    #[tokio::test]
    async fn bad_tickets_are_refused() {
        let tickets = Tickets::new(
            b"0123456789abcdef0123456789abcdef",
            Cache::local(),
            Duration::from_secs(120),
        );
        let other = Tickets::new(
            b"another secret, another cluster!!",
            Cache::local(),
            Duration::from_secs(120),
        );
        let forged = other.issue(&who()).unwrap();
        assert!(tickets
            .redeem(&forged.token)
            .await
            .unwrap_err()
            .to_string()
            .contains("invalid ticket"));
        for junk in ["", "not.a.jwt", "a.b.c", "' OR 1=1 --"] {
            assert!(tickets.redeem(junk).await.is_err(), "{junk}");
        }
        let short = Tickets::new(
            b"0123456789abcdef0123456789abcdef",
            Cache::local(),
            Duration::from_secs(1),
        );
        let t = short.issue(&who()).unwrap();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!(short
            .redeem(&t.token)
            .await
            .unwrap_err()
            .to_string()
            .contains("expired"));
    }
}
