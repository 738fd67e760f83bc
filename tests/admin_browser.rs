//! The admin console in a real browser: headless Chromium (Debian's `chromium`, driven through
//! `chromedriver` by fantoccini) logs in on `/admin` and sees the node and the session actor a
//! chat turn created, live.

mod common;

use std::process::Stdio;
use std::time::Duration;

use aurora_fakes::Reply;
use common::ws::{chat_node, new_session, open, query, turn};
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
    let (t, _fake, _dir) = chat_node(
        vec![Reply::text(&["All quiet."], (5, 2))],
        "#!/bin/sh\necho ok\n",
        &[],
    )
    .await;
    let admin = t.register("admin@acme.io", "Acme").await;
    let sid = new_session(&t, &admin).await;
    let mut ws = open(&t, &admin).await;
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
        browser.goto(&format!("{}/admin", t.base)).await?;
        browser
            .find(Locator::Css("#email"))
            .await?
            .send_keys("admin@acme.io")
            .await?;
        browser
            .find(Locator::Css("#password"))
            .await?
            .send_keys("correct horse battery")
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
        let node = browser.find(Locator::Css("[data-kind='node']")).await?;
        assert!(node.text().await?.contains(&t.node().name));
        let counts = browser.find(Locator::Css("#by-kind")).await?.text().await?;
        assert!(counts.contains("session"), "{counts}");
        let nodes = browser.find(Locator::Css("#by-node")).await?.text().await?;
        assert!(nodes.contains(&t.node().name), "{nodes}");
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    result.expect("the console shows the tree");
}
