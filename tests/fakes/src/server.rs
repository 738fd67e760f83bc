use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::oneshot;
use warp::http::HeaderMap;
use warp::Filter;

use crate::script::{status_response, Reply};

/// A scripted HTTP server answering `POST /v1/<path>`; stops when dropped.
pub struct FakeServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    _stop: oneshot::Sender<()>,
}

impl FakeServer {
    pub(crate) async fn start(
        path: &'static str,
        script: Vec<Reply>,
        render: fn(Reply) -> warp::reply::Response,
    ) -> FakeServer {
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let queue = script.clone();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let wanted = format!("/v1/{path}");
        let route = warp::path::full()
            .and(warp::post())
            .and(warp::header::headers_cloned())
            .and(warp::body::json())
            .map(
                move |full: warp::path::FullPath, headers: HeaderMap, body: Value| {
                    if full.as_str() != wanted {
                        return status_response(404, &format!("no route {}", full.as_str()), None);
                    }
                    seen.lock().unwrap().push((headers, body));
                    match script.lock().unwrap().pop_front() {
                        Some(reply) => render(reply),
                        None => status_response(500, "fake script exhausted", None),
                    }
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake server");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            warp::serve(route)
                .incoming(listener)
                .graceful(async {
                    let _ = rx.await;
                })
                .run()
                .await;
        });
        FakeServer {
            addr,
            requests,
            script: queue,
            _stop: tx,
        }
    }

    /// The API root to configure a client with (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Adds replies to the end of the script (for answers that name what a test made after
    /// the server started).
    pub fn push(&self, replies: Vec<Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    /// Every request body received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// The value of header `name` on every request so far.
    pub fn header(&self, name: &str) -> Vec<Option<String>> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(h, _)| {
                h.get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            })
            .collect()
    }
}
