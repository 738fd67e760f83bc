//! The admin console in a real browser: headless Chromium (Debian's `chromium`, driven through
//! `chromedriver` by fantoccini) logs in on `/admin` of one node of a three-node cluster and sees
//! all three nodes and the session actor a chat turn created (on whichever node owns it), live.

mod common;

use std::process::Stdio;
use std::time::Duration;

use aurora_fakes::Reply;
use common::cluster::TestCluster;
use common::ws::{query, turn};
use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

fn program(var: &str, default: &str) -> String {
    let path = std::env::var(var).unwrap_or_else(|_| default.to_string());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: scripts/test.sh installs chromium and chromium-driver"
    );
    path
}

/// A chromedriver on a free loopback port, killed with the test.
async fn chromedriver() -> (tokio::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(program("CHROMEDRIVER", "/usr/bin/chromedriver"))
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (child, port);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sees_the_live_actor_tree_in_a_browser() {
    let c = TestCluster::start(3, vec![Reply::text(&["All quiet."], (5, 2))]).await;
    let admin = c.register(0, "admin@acme.io").await;
    let sid = c.new_session(0, &admin).await;
    let mut ws = c.open(0, 0, &admin).await.expect("connects");
    query(&mut ws, &sid, "anything on fire?", "agent").await;
    turn(&mut ws, "cancel").await;

    let (_driver, port) = chromedriver().await;
    let chromium = program("CHROMIUM", "/usr/bin/chromium");
    let caps = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu",
                     "--disable-background-networking", "--disable-dev-shm-usage"],
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    let browser = ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session");
    let result = async {
        browser
            .goto(&format!("{}/admin", c.nodes[0].base()))
            .await?;
        browser
            .find(Locator::Css("#email"))
            .await?
            .send_keys("admin@acme.io")
            .await?;
        browser
            .find(Locator::Css("#password"))
            .await?
            .send_keys(common::cluster::PASSWORD)
            .await?;
        browser
            .find(Locator::Css("#login-button"))
            .await?
            .click()
            .await?;
        let session = browser
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(&format!(
                "[data-kind='session'][data-id='{sid}']"
            )))
            .await?;
        assert!(session.text().await?.contains("session"));
        let nodes = browser.find_all(Locator::Css("[data-kind='node']")).await?;
        assert_eq!(nodes.len(), 3);
        let counts = browser.find(Locator::Css("#by-kind")).await?.text().await?;
        assert!(counts.contains("session"), "{counts}");
        let by_node = browser.find(Locator::Css("#by-node")).await?.text().await?;
        for p in &c.nodes {
            assert!(by_node.contains(&p.name), "{by_node}");
        }
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    result.expect("the console shows the tree");
}
