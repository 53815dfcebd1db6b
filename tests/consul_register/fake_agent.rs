//! A recording stand-in for the agent's HTTP API, to check what goes over the wire:
//! answers 200 to everything, except check updates the test told it to refuse.
#![allow(unreachable_pub)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

/// One request as the agent saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, percent-decoded.
    pub uri: String,
    pub token: Option<String>,
    pub body: String,
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    refuse_updates: Mutex<VecDeque<(u16, &'static str)>>,
}

pub struct FakeAgent {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FakeAgent {
    pub async fn start() -> FakeAgent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| answer(state.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeAgent { addr, state, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The next check update gets `status` with `body`, as an agent that forgot it.
    pub fn refuse_next_update(&self, status: u16, body: &'static str) {
        self.state
            .refuse_updates
            .lock()
            .unwrap()
            .push_back((status, body));
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    state: Arc<State>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = req.method().to_string();
    let raw = req.uri().to_string();
    let uri = percent_decode(&raw);
    let token = req
        .headers()
        .get("x-consul-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = req.into_body().collect().await?.to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    let refusal = if uri.starts_with("/v1/agent/check/update/") {
        state.refuse_updates.lock().unwrap().pop_front()
    } else {
        None
    };
    state.seen.lock().unwrap().push(Seen {
        method,
        uri,
        token,
        body,
    });
    let (status, text) = refusal.unwrap_or((200, ""));
    let response = Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(text)))
        .unwrap();
    Ok(response)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
