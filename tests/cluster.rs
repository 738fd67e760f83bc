//! Three `aurora serve` processes on 127.0.0.1 forming one cluster over a shared PostgreSQL
//! database and Redis: sessions spread over the nodes and any node serves any client; a node
//! killed mid-turn (its turn continues elsewhere); every node restarted in turn under a running load.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aurora_fakes::{Completion, Reply};
use aurora_supervisors::Placement;
use common::cluster::{kubectl_runs, slow_kubectl, Endpoint, TestCluster};
use common::ws::{is_end, next, query, Ws};
use futures::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

fn placement(c: &TestCluster) -> Placement {
    let names: Vec<String> = c.nodes.iter().map(|p| p.name.clone()).collect();
    Placement::new(names[0].clone(), names)
}

/// Frames of one turn, until END (`None` when the connection closed first).
async fn turn(ws: &mut Ws) -> Option<Vec<Value>> {
    let mut frames = Vec::new();
    loop {
        let f = next(ws).await?;
        let end = is_end(&f);
        frames.push(f);
        if end {
            return Some(frames);
        }
    }
}

fn text_of(frames: &[Value]) -> String {
    frames
        .iter()
        .filter(|f| f["type"] == "message" && f["data"]["is_chunk"] == true)
        .map(|f| f["data"]["text"].as_str().unwrap_or(""))
        .collect()
}

fn errors(frames: &[Value]) -> Vec<&Value> {
    frames.iter().filter(|f| f["type"] == "error").collect()
}

/// Where each live session actor is, from the admin API of node `i`.
async fn session_homes(c: &TestCluster, i: usize, token: &str) -> Vec<(String, String)> {
    let (status, body) = c.get(i, "/api/admin/actors", token).await;
    assert!(status.is_success(), "{body}");
    let mut homes = Vec::new();
    for node in body["nodes"].as_array().unwrap() {
        let name = node["id"].as_str().unwrap().to_string();
        let mut stack: Vec<&Value> = vec![node];
        while let Some(a) = stack.pop() {
            if a["kind"] == "session" {
                homes.push((a["id"].as_str().unwrap().to_string(), name.clone()));
            }
            stack.extend(a["children"].as_array().unwrap().iter());
        }
    }
    homes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_three_nodes_and_any_node_serves_any_client() {
    let script = (0..6)
        .map(|k| Reply::text(&["answer ", &format!("number {k}")], (3, 2)))
        .collect();
    let c = TestCluster::start(3, script).await;
    let token = c.register(0, "ops@cluster.test").await;
    // Two sessions owned by each node.
    let place = placement(&c);
    let mut sessions: Vec<(String, String)> = Vec::new();
    for node in &c.nodes {
        let mut mine = 0;
        while mine < 2 {
            let sid = c.new_session(1, &token).await;
            let owner = place.owner(Uuid::parse_str(&sid).unwrap()).to_string();
            if owner == node.name {
                sessions.push((sid, owner));
                mine += 1;
            }
        }
    }
    // One client on node1, with a ticket issued by node2: it streams every turn, four of the
    // six from sessions owned elsewhere.
    let mut ws = c.open(0, 1, &token).await.expect("connects");
    for (k, (sid, _)) in sessions.iter().enumerate() {
        query(&mut ws, sid, &format!("question {k}"), "agent").await;
        let frames = turn(&mut ws).await.expect("the turn ends");
        assert!(errors(&frames).is_empty(), "{frames:?}\n{}", c.logs());
        assert_eq!(text_of(&frames), format!("answer number {k}"));
        assert!(
            frames.iter().any(|f| f["type"] == "usage_final"),
            "{frames:?}"
        );
    }
    // Each session lives on its owner, as the admin console (asked on node3) shows.
    let homes = session_homes(&c, 2, &token).await;
    for (sid, owner) in &sessions {
        assert!(
            homes.contains(&(sid.clone(), owner.clone())),
            "{sid} should live on {owner}: {homes:?}"
        );
    }
    let (_, body) = c.get(2, "/api/admin/actors", &token).await;
    let by_node = body["counts"]["by_node"].as_object().unwrap();
    assert_eq!(by_node.len(), 3, "{body}");
    // The history is the same through any node.
    let (sid, _) = &sessions[5];
    let history = c.history(1, &token, sid).await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["content"], "answer number 5");

    // Deleting a session through any node stops its live actor wherever it runs; asking it
    // again is NOT_FOUND, with no model call.
    let (victim, owner) = &sessions[2];
    let resp = c
        .client
        .delete(format!("{}/chat_api/sessions/{victim}", c.nodes[1].base()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let homes = session_homes(&c, 0, &token).await;
    assert!(
        !homes.iter().any(|(s, _)| s == victim),
        "{victim} still live on {owner}: {homes:?}"
    );
    let calls = c.fake.requests().len();
    query(&mut ws, victim, "still there?", "agent").await;
    let f = next(&mut ws).await.unwrap();
    assert_eq!(f["type"], "error", "{f}");
    assert_eq!(f["data"]["code"], "NOT_FOUND", "{f}");
    assert_eq!(c.fake.requests().len(), calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_tool_call_leaves_its_turn_to_continue_elsewhere_without_running_the_tool_again(
) {
    let (_tools, path) = slow_kubectl();
    let script = vec![
        Reply::text(&["first answer"], (3, 2)),
        Reply::tool_call(
            "c1",
            "cloud_exec",
            &["{\"command\": \"kubectl get pods\"}"],
            (10, 5),
        ),
        Reply::text(&["continued after the interruption"], (3, 2)),
        Reply::text(&["third answer"], (3, 2)),
    ];
    let mut c = TestCluster::start_with(3, script, &[("AURORA_TOOL_PATH", path.as_str())]).await;
    let token = c.register(0, "ops@failover.test").await;
    let sid = c.session_owned_by(2, &token).await;
    let mut ws = c.open(0, 0, &token).await.expect("connects");
    query(&mut ws, &sid, "first", "agent").await;
    let frames = turn(&mut ws).await.unwrap();
    assert_eq!(text_of(&frames), "first answer", "{frames:?}");

    // The second turn's tool runs on node3; kill -9 it while the tool runs.
    query(&mut ws, &sid, "second", "agent").await;
    loop {
        let f = next(&mut ws).await.expect("streaming");
        if f["type"] == "tool_call" && f["data"]["status"] == "running" {
            break;
        }
    }
    let dir = c.dir().to_path_buf();
    let runs = || kubectl_runs(&dir);
    let started = Instant::now();
    while runs() == 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(runs(), 1, "the tool started");
    let killed = Instant::now();
    c.kill(2);
    // The same client receives the rest of the turn from the session's new owner: the call
    // is reported interrupted (not run again) and the model goes on.
    let frames = {
        use futures::FutureExt;
        match std::panic::AssertUnwindSafe(turn(&mut ws))
            .catch_unwind()
            .await
        {
            Ok(frames) => frames.expect("the turn goes on"),
            Err(_) => panic!("the turn did not go on\n{}", c.logs()),
        }
    };
    let told = killed.elapsed();
    assert!(errors(&frames).is_empty(), "{frames:?}\n{}", c.logs());
    let interrupted: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "tool_error")
        .collect();
    assert_eq!(interrupted.len(), 1, "{frames:?}");
    assert!(
        interrupted[0].to_string().contains("interrupted"),
        "{interrupted:?}"
    );
    assert_eq!(text_of(&frames), "continued after the interruption");
    assert_eq!(runs(), 1, "the tool ran once");
    // The model was shown the call and that it was interrupted.
    let resumed = c.fake.requests().last().unwrap()["messages"].to_string();
    assert!(
        resumed.contains("kubectl get pods") && resumed.contains("interrupted"),
        "{resumed}"
    );

    // Asking again works at once, on a live node.
    query(&mut ws, &sid, "third", "agent").await;
    let frames = turn(&mut ws).await.expect("the next turn ends");
    assert!(errors(&frames).is_empty(), "{frames:?}\n{}", c.logs());
    assert_eq!(text_of(&frames), "third answer");
    let rehomed = killed.elapsed();
    println!("failover: turn continued within {told:?}, next turn done after {rehomed:?}");
    // Stored, in order: every step of the interrupted turn and its continuation.
    let history = c.history(1, &token, &sid).await;
    let roles: Vec<&str> = history
        .iter()
        .map(|m| m["role"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "user",
            "assistant",
            "tool",
            "assistant",
            "user",
            "assistant"
        ],
        "{history:#?}"
    );
    assert_eq!(history[2]["content"], "second");
    assert!(
        history[4]["content"]
            .as_str()
            .unwrap()
            .starts_with("interrupted"),
        "{history:#?}"
    );
    assert_eq!(history[5]["content"], "continued after the interruption");
    assert_eq!(runs(), 1, "the tool ran once");
    c.wait_members(2).await;
    let homes = session_homes(&c, 1, &token).await;
    let home = homes
        .iter()
        .find(|(s, _)| s == &sid)
        .map(|(_, n)| n.clone());
    assert!(
        matches!(home.as_deref(), Some("node1") | Some("node2")),
        "{homes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_whose_node_dies_with_no_client_waiting_still_finishes() {
    let script = vec![
        Reply::Stream(Completion {
            text: (0..100).map(|i| format!("slow {i} ")).collect(),
            usage: Some((5, 5)),
            delay: Duration::from_millis(100),
            ..Default::default()
        }),
        Reply::text(&["finished elsewhere"], (3, 2)),
    ];
    let mut c = TestCluster::start(3, script).await;
    let token = c.register(0, "ops@orphan.test").await;
    let sid = c.session_owned_by(2, &token).await;
    // The client is on the node that dies too: nobody waits for the rest of the turn.
    let mut ws = c.open(2, 2, &token).await.expect("connects");
    query(&mut ws, &sid, "question", "agent").await;
    loop {
        let f = next(&mut ws).await.expect("streaming");
        if f["type"] == "message" {
            break;
        }
    }
    c.kill(2);
    // A live node that owns the session now continues the turn from its stored query.
    let started = Instant::now();
    let history = loop {
        let history = c.history(0, &token, &sid).await;
        if history.len() >= 2 || started.elapsed() > Duration::from_secs(30) {
            break history;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let contents: Vec<&str> = history
        .iter()
        .map(|m| m["content"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(contents, ["question", "finished elsewhere"], "{}", c.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_answering_is_removed_and_comes_back() {
    let mut c = TestCluster::start(3, Vec::new()).await;
    // Frozen: its TCP links stay open, only the pings go unanswered.
    c.signal(2, "STOP");
    let took = c.wait_seen(&[0, 1], &["node1", "node2"]).await;
    println!("a frozen node was dropped after {took:?}");
    c.signal(2, "CONT");
    c.wait_members(3).await;
}

#[derive(Default)]
struct Tally {
    completed: usize,
    /// Turns that ended with an error frame (a lost turn, unless the text says otherwise).
    errored: Vec<String>,
    /// Turns whose connection closed before END: (session, query), checked against storage.
    interrupted: Vec<(String, String)>,
    /// Queries the node closed the connection on before reading them (sent again elsewhere).
    resent: usize,
}

/// One user's session driven turn after turn, through node after node, until `stop`.
async fn drive(
    c: Arc<Vec<Endpoint>>,
    token: String,
    sid: String,
    start: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) {
    let n = c.len();
    let client = reqwest::Client::new();
    let mut k = 0;
    let mut reconnects = 0;
    // One connection, kept across turns like a browser's; when its node goes away, the next
    // node in turn takes over.
    let mut ws: Option<Ws> = None;
    while !stop.load(Ordering::Relaxed) {
        if ws.is_none() {
            for attempt in 0..n * 4 {
                let i = (start + reconnects + attempt) % n;
                if let Some(w) = try_open(&client, &c[i], &token).await {
                    ws = Some(w);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            reconnects += 1;
        }
        let socket = ws.as_mut().expect("some node accepts a connection");
        let q = format!("turn {k} of {sid}");
        let sent = socket
            .send(Message::Text(
                json!({ "type": "query", "query": q, "session_id": sid, "mode": "agent" })
                    .to_string()
                    .into(),
            ))
            .await
            .is_ok();
        let mut frames = Vec::new();
        let mut ended = false;
        if sent {
            while let Some(f) = next(socket).await {
                ended = is_end(&f);
                frames.push(f);
                if ended {
                    break;
                }
            }
        }
        if !ended {
            ws = None;
        }
        let mut t = tally.lock().unwrap();
        if ended {
            let errs = errors(&frames);
            if errs.is_empty() {
                t.completed += 1;
            } else {
                t.errored.push(format!("{q}: {errs:?}"));
            }
        } else if frames.is_empty() {
            // Closed (1001) before the node read the query: it was never taken; ask again
            // elsewhere.
            t.resent += 1;
            continue;
        } else {
            t.interrupted.push((sid.clone(), q));
        }
        drop(t);
        k += 1;
    }
}

/// A connection through node `i`, `None` if it is down (or going down).
async fn try_open(client: &reqwest::Client, node: &Endpoint, token: &str) -> Option<Ws> {
    let resp = client
        .post(format!("{}/api/auth/ws-token", node.base))
        .bearer_auth(token)
        .json(&serde_json::json!({}))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let ticket = resp.json::<Value>().await.ok()?["token"]
        .as_str()?
        .to_string();
    let url = format!("ws://127.0.0.1:{}/?token={ticket}", node.ws);
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .ok()?
    .ok()?;
    let start = next(&mut ws).await?;
    (start["data"]["status"] == "START").then_some(ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_node_in_turn_under_load_loses_no_turn() {
    let script = (0..3000)
        .map(|_| {
            Reply::Stream(Completion {
                text: vec!["working ".into(), "on ".into(), "it".into()],
                usage: Some((3, 3)),
                delay: Duration::from_millis(40),
                ..Default::default()
            })
        })
        .collect();
    let mut c = TestCluster::start(3, script).await;
    let token = c.register(0, "ops@rolling.test").await;
    let mut sids = Vec::new();
    for _ in 0..6 {
        sids.push(c.new_session(0, &token).await);
    }
    // The load only needs where the nodes are (a restarted node comes back on its ports).
    let endpoints = Arc::new(c.endpoints());
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut load = Vec::new();
    for (j, sid) in sids.iter().enumerate() {
        load.push(tokio::spawn(drive(
            endpoints.clone(),
            token.clone(),
            sid.clone(),
            j,
            stop.clone(),
            tally.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..3 {
        c.stop(i).await;
        c.wait_members(2).await;
        c.spawn(i);
        c.wait_members(3).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    println!(
        "rolling restart: {} turns completed, {} errored, {} interrupted, {} queries sent again",
        tally.completed,
        tally.errored.len(),
        tally.interrupted.len(),
        tally.resent
    );
    assert!(
        tally.errored.is_empty(),
        "{:?}\n{}",
        tally.errored,
        c.logs()
    );
    assert!(
        tally.completed >= 30,
        "only {} turns completed",
        tally.completed
    );
    // A turn whose connection closed under it was still run and saved where its session was.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (sid, q) in &tally.interrupted {
        let history = c.history(0, &token, sid).await;
        let at = history.iter().position(|m| m["content"] == q.as_str());
        let answered =
            at.is_some_and(|i| history.get(i + 1).is_some_and(|m| m["role"] == "assistant"));
        assert!(answered, "{q} was lost: {history:?}\n{}", c.logs());
    }
}
