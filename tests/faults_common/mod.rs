//! The fault-suite harness: `ConsulDev` → `consul::Discovery` → `BalancedChannel` →
//! three real Echo servers (`a`, `b`, `c`) on loopback, registered through the agent
//! API with passing TTL checks, under a steady load of Echo calls.
//!
//! Each scenario injects a fault, changes the registry while it lasts (`b` turns
//! critical), then checks: no failed call, no error item from discovery, calls kept
//! flowing to the last known instances, a bounded number of registry reads (derived
//! from the backoff or re-query pacing, see [`max_failed_reads`] and
//! [`max_paced_reads`]), and, once the registry answers again, no call to `b`.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use consul_dev::ConsulDev;
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::Instant;
use tonic_discovery::Backoff;
use tonic_discovery::balance::{BalancedChannel, EndpointState};
use tonic_discovery::consul::{Client, WatchObserver};
use tonic_discovery_testkit::TestEchoServer;

use crate::support::eventually;

mod load;
pub use load::Load;

/// How long to wait for a condition before the test fails.
pub const T: Duration = Duration::from_secs(10);
/// The health read every watch makes.
pub const HEALTH: &str = "/v1/health/service/echo";
/// Jitter of the discovery backoff; the bounds use the shortest delay it allows.
pub const JITTER: f64 = 0.5;
/// Slack in the read bounds for the read in flight at each edge of the window.
const EDGE: u64 = 2;

/// How the watch is paced; small so scenarios are quick.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// `?wait=` of blocking reads. Long by default so that a client stuck on a stale
    /// index would miss changes for longer than the test waits.
    pub wait: Duration,
    /// The client's request timeout (the whole timeout of a fresh read).
    pub request_timeout: Duration,
    pub backoff: Backoff,
    pub requery: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            wait: Duration::from_secs(60),
            request_timeout: Duration::from_millis(500),
            backoff: Backoff::new(Duration::from_millis(20), Duration::from_millis(200))
                .jitter(JITTER),
            requery: Duration::from_millis(100),
        }
    }
}

/// The most reads a watch failing without pause can make in `elapsed`: after the
/// `k`-th failure it sleeps at least `(1 - JITTER) × min(min·2ᵏ⁻¹, max)`.
pub fn max_failed_reads(backoff: Backoff, elapsed: Duration) -> u64 {
    let mut reads = 1;
    let mut slept = Duration::ZERO;
    loop {
        let exp = (reads - 1).min(32) as u32;
        let base = backoff
            .min()
            .saturating_mul(1 << exp.min(20))
            .min(backoff.max());
        slept += base.mul_f64(1.0 - JITTER);
        if slept > elapsed {
            return reads + EDGE;
        }
        reads += 1;
    }
}

/// The most reads a watch answered without a new index can make in `elapsed`: one
/// per index change, plus the token bucket's burst of 2 and one per `requery`.
pub fn max_paced_reads(pace: Pace, index_changes: u64, elapsed: Duration) -> u64 {
    let refills = elapsed.as_nanos() / pace.requery.as_nanos();
    index_changes + 2 + u64::try_from(refills).unwrap_or(u64::MAX) + EDGE
}

/// Retries `attempt` every 5 ms until it succeeds, for up to [`T`] (e.g. binding a
/// port whose previous listener is closing).
pub async fn until_ok<V, Fut>(what: &str, mut attempt: impl FnMut() -> Fut) -> V
where
    Fut: std::future::Future<Output = std::io::Result<V>>,
{
    let deadline = Instant::now() + T;
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Registers `id` of `echo` at `port` with a passing TTL check `ttl-<id>`.
pub async fn register(url: &str, id: &str, port: u16) {
    #[cfg(feature = "tls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let body = json!({
        "Name": "echo", "ID": id, "Address": "127.0.0.1", "Port": port,
        "Check": {"CheckID": format!("ttl-{id}"), "TTL": "600s", "Status": "passing"}
    });
    let resp = reqwest::Client::new()
        .put(format!("{url}/v1/agent/service/register"))
        .body(body.to_string())
        .send()
        .await
        .expect("register");
    assert_eq!(resp.status(), 200, "register {id}");
}

/// Three Echo servers behind a balanced channel fed by Consul discovery, under load.
pub struct Mesh {
    pub dev: ConsulDev,
    pub servers: Vec<TestEchoServer>,
    pub channel: BalancedChannel,
    /// Observes the channel's discovery: read its watch state.
    pub probe: WatchObserver,
    pub pace: Pace,
    discovery_errors: Arc<AtomicU64>,
    pub load: Load,
}

impl Mesh {
    pub async fn start(pace: Pace) -> Mesh {
        let dev = ConsulDev::start().await.expect("registry");
        let mut servers = Vec::new();
        for id in ["a", "b", "c"] {
            let server = TestEchoServer::start(id).await.expect("echo");
            register(&dev.url(), id, server.addr().port()).await;
            servers.push(server);
        }
        let client = Client::builder(dev.url())
            .request_timeout(pace.request_timeout)
            .build()
            .expect("client");
        let discovery = (client.discovery("echo"))
            .wait(pace.wait)
            .backoff(pace.backoff)
            .requery_interval(pace.requery)
            .build();
        let probe = discovery.observer();
        let discovery_errors = Arc::new(AtomicU64::new(0));
        let errors = discovery_errors.clone();
        let counted = discovery.inspect(move |item| {
            if item.is_err() {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        });
        let channel = BalancedChannel::builder("echo")
            .failfast_timeout(Duration::from_secs(2))
            .build(counted)
            .expect("valid balancer settings");
        let mesh = Mesh {
            probe,
            load: Load::start(&channel, 4),
            dev,
            servers,
            channel,
            pace,
            discovery_errors,
        };
        eventually(T, "three ready instances", || async {
            mesh.ready() == ["a", "b", "c"]
        })
        .await;
        mesh.load.wait_for_more(50).await;
        mesh
    }

    /// The ids of the channel's ready endpoints, sorted.
    pub fn ready(&self) -> Vec<String> {
        let mut ids: Vec<String> = (self.channel.endpoints().iter())
            .filter(|e| e.state() == EndpointState::Ready)
            .map(|e| e.key().id().to_owned())
            .collect();
        ids.sort();
        ids
    }

    /// The ids of every endpoint in the channel, ready or not.
    pub fn endpoints(&self) -> Vec<String> {
        let mut ids: Vec<String> = (self.channel.endpoints().iter())
            .map(|e| e.key().id().to_owned())
            .collect();
        ids.sort();
        ids
    }

    pub fn server(&self, id: &str) -> &TestEchoServer {
        (self.servers.iter())
            .find(|s| s.service().id() == id)
            .expect("known server")
    }

    /// Health reads made so far.
    pub fn reads(&self) -> u64 {
        self.dev.request_count(HEALTH)
    }

    /// Waits until the watch has failed `n` times in a row.
    pub async fn wait_failing(&self, n: u32) {
        eventually(T, "the watch fails", || async {
            self.probe.state().consecutive_failures() >= n
        })
        .await;
    }

    /// Turns `b` critical in the registry (no HTTP: works whatever the faults).
    pub fn fail_b(&self) {
        assert!(self.dev.set_check_status("ttl-b", "critical", "down"));
    }

    /// Waits until the channel has dropped `b`, then checks `b` gets no more calls
    /// while the load serves `calls` more.
    pub async fn assert_b_gone(&self, calls: u64) {
        eventually(T, "b leaves the channel", || async {
            !self.endpoints().contains(&"b".to_owned())
        })
        .await;
        // Calls routed before the removal may still be in flight: once every caller
        // has finished one more call, they are all done.
        self.load.settle().await;
        let b = self.server("b");
        let received = b.service().received();
        self.load.wait_for_more(calls).await;
        assert_eq!(
            b.service().received(),
            received,
            "a call reached b after Consul stopped listing it"
        );
        eventually(T, "b's connection closes", || async {
            b.open_connections() == 0
        })
        .await;
    }

    /// Stops the load; asserts no call failed and discovery never yielded an error.
    pub async fn finish(mut self) -> u64 {
        let (ok, failures) = self.load.stop().await;
        assert!(failures.is_empty(), "failed calls: {failures:?}");
        assert_eq!(self.discovery_errors.load(Ordering::Relaxed), 0);
        assert!(self.probe.state().last_error().is_none());
        ok
    }
}

/// A fault window: counts health reads and time from its start.
pub struct Window {
    start: Instant,
    reads: u64,
    served_b: u64,
    ok: u64,
}

impl Window {
    pub fn open(mesh: &Mesh) -> Window {
        Window {
            start: Instant::now(),
            reads: mesh.reads(),
            served_b: mesh.server("b").service().served(),
            ok: mesh.load.ok(),
        }
    }

    /// Reads so far in the window and its length. Counted before the clock is read,
    /// so a read racing the measure only makes the bound looser.
    pub fn measure(&self, mesh: &Mesh) -> (u64, Duration) {
        let reads = mesh.reads() - self.reads;
        (reads, self.start.elapsed())
    }

    /// Calls served in the window, and by `b`.
    pub fn served(&self, mesh: &Mesh) -> (u64, u64) {
        let b = mesh.server("b").service().served() - self.served_b;
        (mesh.load.ok() - self.ok, b)
    }
}
