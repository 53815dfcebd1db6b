//! Draining under load, end to end: three Echo servers register through
//! `consul::Registration` with `ConsulDev`, a `BalancedChannel` over `consul::Discovery`
//! sends 200 requests/s, one instance drains (check critical, grace, deregister) and
//! shuts down gracefully. No request may fail.
#![cfg(feature = "testkit")]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic_discovery::balance::{BalancedChannel, EndpointState};
use tonic_discovery::consul::{Client, Registration, RegistrationHandle};
use tonic_discovery::testkit::pb::EchoRequest;
use tonic_discovery::testkit::pb::echo_client::EchoClient;
use tonic_discovery::testkit::{ConsulDev, TestEchoServer};

const WAIT: Duration = Duration::from_secs(10);
const GRACE: Duration = Duration::from_secs(1);

/// Every answer: when the request was sent, and which instance answered or the code.
type Log = Arc<Mutex<Vec<(Instant, Result<String, tonic::Code>)>>>;

struct Load {
    stop: Arc<AtomicBool>,
    log: Log,
    task: tokio::task::JoinHandle<()>,
}

/// 200 requests/s, each on its own task so a slow answer never delays the next send.
fn start_load(channel: BalancedChannel) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let log: Log = Arc::default();
    let (stop2, log2) = (stop.clone(), log.clone());
    let task = tokio::spawn(async move {
        let mut calls = JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        while !stop2.load(Ordering::Relaxed) {
            tick.tick().await;
            let (channel, log) = (channel.clone(), log2.clone());
            calls.spawn(async move {
                let sent = Instant::now();
                let reply = EchoClient::new(channel).echo(EchoRequest::default()).await;
                let outcome = reply
                    .map(|r| r.into_inner().instance_id)
                    .map_err(|s| s.code());
                log.lock().unwrap().push((sent, outcome));
            });
        }
        while calls.join_next().await.is_some() {}
    });
    Load { stop, log, task }
}

impl Load {
    fn served_by(&self, id: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.iter().filter(|(_, r)| r.as_deref() == Ok(id)).count()
    }

    async fn finish(self) -> Vec<(Instant, Result<String, tonic::Code>)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        Arc::try_unwrap(self.log).unwrap().into_inner().unwrap()
    }
}

/// When a request answered by b was sent.
fn sent_to_b((sent, outcome): &(Instant, Result<String, tonic::Code>)) -> Option<Instant> {
    (outcome.as_deref() == Ok("b")).then_some(*sent)
}

async fn register(client: &Client, server: &TestEchoServer) -> RegistrationHandle {
    let id = server.service().id().to_owned();
    let reg = Registration::new("echo", server.addr())
        .id(id)
        .ttl(Duration::from_secs(3));
    client.register(reg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_instance_loses_no_request_under_load() {
    support::trace_init();
    #[cfg(feature = "tls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dev = ConsulDev::start().await.unwrap();
    let client = Client::builder(dev.url()).build().unwrap();
    let mut servers = Vec::new();
    let mut handles = Vec::new();
    for id in ["a", "b", "c"] {
        let server = TestEchoServer::start(id).await.unwrap();
        handles.push(register(&client, &server).await);
        servers.push(server);
    }
    let channel = BalancedChannel::builder("echo").build(client.discovery("echo").build());
    support::eventually(WAIT, "three ready instances", || async {
        let eps = channel.endpoints();
        eps.iter()
            .filter(|e| e.state() == EndpointState::Ready)
            .count()
            == 3
    })
    .await;

    let load = start_load(channel.clone());
    support::eventually(WAIT, "every instance serving", || async {
        ["a", "b", "c"].iter().all(|id| load.served_by(id) >= 20)
    })
    .await;

    // Drain b: critical, grace, deregister; then stop it the way a server does after
    // `serve_with_shutdown`'s future resolves (finish in-flight requests).
    let drain_start = Instant::now();
    let drain = tokio::spawn(handles.remove(1).drain(GRACE));
    support::eventually(WAIT, "b out of the channel", || async {
        channel.endpoints().iter().all(|e| e.key().id() != "b")
    })
    .await;
    // Recorded after the removal: every request sent from here on must miss b.
    let removed_at = Instant::now();
    drain.await.unwrap().unwrap();
    let b = servers.remove(1);
    b.shutdown().await;
    let after = load.served_by("a") + load.served_by("c");
    support::eventually(WAIT, "traffic going on without b", || async {
        load.served_by("a") + load.served_by("c") >= after + 200
    })
    .await;

    let log = load.finish().await;
    let errors: Vec<_> = log.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(
        errors.is_empty(),
        "{} of {} requests failed: {errors:?}",
        errors.len(),
        log.len()
    );
    let late: Vec<_> = log
        .iter()
        .filter_map(sent_to_b)
        .filter(|sent| *sent > removed_at)
        .collect();
    assert!(
        late.is_empty(),
        "{} requests sent after b left the channel reached b",
        late.len()
    );
    let last_to_b = log.iter().filter_map(sent_to_b).max().unwrap();
    let last = match last_to_b.checked_duration_since(drain_start) {
        Some(d) => format!("{d:?} after drain start"),
        None => format!("{:?} before drain start", drain_start - last_to_b),
    };
    eprintln!(
        "{} requests, 0 failed; drain start -> b out of the channel: {:?}; \
         last request sent to b: {last} (grace {GRACE:?})",
        log.len(),
        removed_at - drain_start,
    );
    drop(handles);
}
