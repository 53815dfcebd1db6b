//! A tiny Consul stand-in for the discovery tests: `GET /v1/health/service/:name`
//! with blocking queries (`index`, `wait`), `passing` and `tag`, over raw HTTP/1.1
//! on loopback (optionally TLS). Fault hooks: take the server down and bring it back
//! on the same port, restore an older index (Consul's snapshot restore).
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

#[cfg(feature = "tls-ring")]
pub type Acceptor = tokio_rustls::TlsAcceptor;
/// Without TLS support there is no acceptor.
#[cfg(not(feature = "tls-ring"))]
#[derive(Debug, Clone)]
pub enum Acceptor {}

/// One registered instance.
#[derive(Debug, Clone)]
pub struct Entry {
    pub service: String,
    pub id: String,
    pub port: u16,
    pub tags: Vec<String>,
    pub passing: bool,
}

#[derive(Debug, Default)]
struct Data {
    index: u64,
    entries: Vec<Entry>,
    /// Request heads, for assertions on what the client sent.
    requests: Vec<String>,
}

#[derive(Debug)]
struct Shared {
    data: Mutex<Data>,
    /// Bumped on every change; an odd `restore` epoch wakes every blocked query.
    changed: watch::Sender<(u64, u64)>,
}

/// The server. Dropping it stops it and closes every connection.
pub struct MockConsul {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
    tls: Option<Acceptor>,
}

impl MockConsul {
    /// Starts on `127.0.0.1:0` with index 1 and no instances.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts with TLS.
    pub async fn start_with(tls: Option<Acceptor>) -> Self {
        let shared = Arc::new(Shared {
            data: Mutex::new(Data {
                index: 1,
                ..Data::default()
            }),
            changed: watch::channel((1, 0)).0,
        });
        let mut server = MockConsul {
            addr: "127.0.0.1:0".parse().unwrap(),
            shared,
            task: None,
            tls,
        };
        server.listen().await;
        server
    }

    async fn listen(&mut self) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        let listener = socket.listen(64).unwrap();
        self.addr = listener.local_addr().unwrap();
        let shared = self.shared.clone();
        self.task = Some(tokio::spawn(accept(listener, shared, self.tls.clone())));
    }

    /// `http://127.0.0.1:port` (or `https://`).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops listening and drops every connection (the agent died).
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        self.listen().await;
    }

    pub fn register(&self, service: &str, id: &str, port: u16, tags: &[&str]) {
        self.update(|d| {
            d.entries.retain(|e| e.id != id);
            d.entries.push(Entry {
                service: service.to_owned(),
                id: id.to_owned(),
                port,
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                passing: true,
            });
        });
    }

    pub fn deregister(&self, id: &str) {
        self.update(|d| d.entries.retain(|e| e.id != id));
    }

    pub fn set_passing(&self, id: &str, passing: bool) {
        self.update(|d| {
            d.entries
                .iter_mut()
                .filter(|e| e.id == id)
                .for_each(|e| e.passing = passing)
        });
    }

    /// A snapshot restore: the index drops to `index` and blocked queries return.
    pub fn restore(&self, index: u64, entries: Vec<Entry>) {
        let mut d = self.shared.data.lock().unwrap();
        d.index = index;
        d.entries = entries;
        self.shared.changed.send_modify(|(i, epoch)| {
            *i = index;
            *epoch += 1;
        });
    }

    pub fn index(&self) -> u64 {
        self.shared.data.lock().unwrap().index
    }

    /// The heads of every request received so far.
    pub fn requests(&self) -> Vec<String> {
        self.shared.data.lock().unwrap().requests.clone()
    }

    fn update(&self, f: impl FnOnce(&mut Data)) {
        let mut d = self.shared.data.lock().unwrap();
        f(&mut d);
        d.index += 1;
        let index = d.index;
        self.shared.changed.send_modify(|(i, _)| *i = index);
    }
}

impl Drop for MockConsul {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, tls: Option<Acceptor>) {
    // Connection tasks live in the set, so aborting this task ends them too.
    let mut conns = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            match tls {
                None => serve(stream, shared).await,
                #[cfg(feature = "tls-ring")]
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve(stream, shared).await;
                    }
                }
                #[cfg(not(feature = "tls-ring"))]
                Some(never) => match never {},
            }
        });
        while conns.try_join_next().is_some() {}
    }
}

/// Serves requests on one connection until the client closes it.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        // Subscribe before logging: a test that saw the request logged knows a
        // restore from then on wakes it.
        let rx = shared.changed.subscribe();
        shared.data.lock().unwrap().requests.push(head.clone());
        let (status, index, body) = handle(&head, &shared, rx).await;
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Consul-Index: {index}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn handle(
    head: &str,
    shared: &Shared,
    rx: watch::Receiver<(u64, u64)>,
) -> (&'static str, u64, String) {
    let target = head.split_whitespace().nth(1).unwrap_or("/");
    let url = reqwest::Url::parse(&format!("http://x{target}")).unwrap();
    let Some(service) = url.path().strip_prefix("/v1/health/service/") else {
        return ("404 Not Found", 1, String::new());
    };
    let q = |k: &str| {
        url.query_pairs()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.into_owned())
            .collect::<Vec<_>>()
    };
    let index: Option<u64> = q("index").first().and_then(|i| i.parse().ok());
    let wait = q("wait")
        .first()
        .map(|w| parse_wait(w))
        .unwrap_or(Duration::from_secs(300));
    if let Some(index) = index.filter(|i| *i > 0) {
        block(rx, index, wait).await;
    }
    let tags: Vec<String> = q("tag").iter().map(|t| t.to_lowercase()).collect();
    let passing = q("passing")
        .first()
        .is_some_and(|p| p == "true" || p.is_empty());
    let d = shared.data.lock().unwrap();
    let entries: Vec<serde_json::Value> = d
        .entries
        .iter()
        .filter(|e| e.service == service && (!passing || e.passing))
        .filter(|e| {
            tags.iter()
                .all(|t| e.tags.iter().any(|et| et.to_lowercase() == *t))
        })
        .map(entry_json)
        .collect();
    (
        "200 OK",
        d.index,
        serde_json::Value::Array(entries).to_string(),
    )
}

/// Waits until the index passes `index`, a restore happens, or `wait` ends.
async fn block(mut rx: watch::Receiver<(u64, u64)>, index: u64, wait: Duration) {
    let epoch = rx.borrow().1;
    let _ = tokio::time::timeout(wait, rx.wait_for(|(i, e)| *i > index || *e != epoch)).await;
}

fn parse_wait(w: &str) -> Duration {
    if let Some(ms) = w.strip_suffix("ms") {
        Duration::from_millis(ms.parse().unwrap_or(300_000))
    } else if let Some(s) = w.strip_suffix('s') {
        Duration::from_secs(s.parse().unwrap_or(300))
    } else {
        Duration::from_secs(300)
    }
}

fn entry_json(e: &Entry) -> serde_json::Value {
    let status = if e.passing { "passing" } else { "critical" };
    serde_json::json!({
        "Node": {"Node": "node1", "Address": "127.0.0.1", "TaggedAddresses": {"lan": "127.0.0.1"}},
        "Service": {"ID": e.id, "Service": e.service, "Tags": e.tags, "Address": "", "Port": e.port,
                    "Meta": null, "Weights": {"Passing": 1, "Warning": 1}},
        "Checks": [
            {"CheckID": "serfHealth", "Status": "passing", "ServiceID": ""},
            {"CheckID": format!("service:{}", e.id), "Status": status, "ServiceID": e.id}
        ]
    })
}

/// An entry for [`MockConsul::restore`].
pub fn entry(service: &str, id: &str, port: u16) -> Entry {
    Entry {
        service: service.into(),
        id: id.into(),
        port,
        tags: vec![],
        passing: true,
    }
}
