//! Registry faults that make reads fail, under load through the balanced channel:
//! `500 No cluster leader`, `429` connection limit, answers delayed past the client
//! timeout, truncated JSON, HTML instead of JSON, connections dropped mid-body, and
//! a registry down for a while (5 s of real time stand for the minute; no paused
//! clock here, the transport is real sockets; the watch's own backoff under a
//! paused clock is tested in `src/consul/watch/tests.rs`).
//!
//! What we want to test: while reads fail, the channel keeps routing to the last
//! known instances (`b` keeps serving though Consul turned it critical), no call
//! fails, discovery yields no error and the watch backs off (its read count stays
//! under the bound the backoff config allows); once the registry answers, `b`
//! leaves the channel and gets no more calls.

mod faults_common;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use consul_dev::{ConsulDev, Fault, FaultRule};
use faults_common::{Mesh, Pace, T, Window, max_failed_reads, register, until_ok};
use support::eventually;
use tokio::net::TcpListener;
use tonic_discovery::Backoff;

/// Injects `fault` on health reads, turns `b` critical while it lasts, then lifts it.
async fn survives(name: &str, fault: Fault, pace: Pace) {
    support::trace_init();
    let mesh = Mesh::start(pace).await;
    let faults = mesh.dev.faults();
    let rule = faults.add(FaultRule::new(fault).path_prefix("/v1/health/"));
    let window = Window::open(&mesh);
    // Ends the blocking read in flight (answered before the fault); the next read is
    // faulty, but faults on the body only show once it answers: wake it too.
    faults.spurious_wakeup();
    eventually(T, "the next read arrives", || async {
        window.measure(&mesh).0 >= 1
    })
    .await;
    faults.spurious_wakeup();
    mesh.wait_failing(3).await;
    mesh.fail_b();
    mesh.load.wait_for_more(300).await;
    mesh.wait_failing(4).await;

    let (reads, elapsed) = window.measure(&mesh);
    let (calls, calls_b) = window.served(&mesh);
    assert_eq!(
        mesh.endpoints(),
        ["a", "b", "c"],
        "the last known set is kept"
    );
    assert!(calls_b > 0, "b, last known passing, keeps serving");
    let bound = max_failed_reads(pace.backoff, elapsed);
    assert!(
        (4..=bound).contains(&reads),
        "{reads} reads in {elapsed:?}, bound {bound}"
    );
    println!(
        "{name}: {calls} calls served ({calls_b} by b) and {reads} registry reads \
         (bound {bound}) in {elapsed:?} of failure"
    );

    faults.remove(rule);
    mesh.assert_b_gone(300).await;
    mesh.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cluster_leader() {
    survives("500 No cluster leader", Fault::NoLeader, Pace::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_connections() {
    survives("429", Fault::TooManyConnections, Pace::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_json() {
    survives("truncated JSON", Fault::MalformedJson, Pace::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_json() {
    survives("HTML instead of JSON", Fault::NotJson, Pace::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_dropped_mid_body() {
    survives("dropped mid-body", Fault::DropConnection, Pace::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_delayed_past_the_client_timeout() {
    // Blocking reads time out after wait + wait/16 + 300 ms, fresh ones after 300 ms:
    // a 3 s delay exceeds both.
    let pace = Pace {
        wait: Duration::from_secs(1),
        request_timeout: Duration::from_millis(300),
        ..Pace::default()
    };
    survives("delayed 3 s", Fault::Delay(Duration::from_secs(3)), pace).await;
}

/// How long the registry stays down: stands for "a minute", shortened.
const DOWN: Duration = Duration::from_secs(5);

/// Accepts connections on `addr` and closes them at once, counting them: a registry
/// whose process is gone behind a port that still answers TCP.
async fn dead_registry(
    addr: std::net::SocketAddr,
) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    // The old listener closes when its aborted task is dropped, soon after.
    let listener = until_ok("rebind the port", || TcpListener::bind(addr)).await;
    let accepts = Arc::new(AtomicU64::new(0));
    let counter = accepts.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            drop(stream);
        }
    });
    (accepts, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_down_then_restarted_without_b() {
    support::trace_init();
    let pace = Pace {
        backoff: Backoff::new(Duration::from_millis(20), Duration::from_secs(1))
            .jitter(faults_common::JITTER),
        ..Pace::default()
    };
    let mut mesh = Mesh::start(pace).await;
    let placeholder = ConsulDev::start().await.expect("placeholder registry");
    let old = std::mem::replace(&mut mesh.dev, placeholder);
    let addr = old.addr();
    drop(old);
    let (accepts, dead) = dead_registry(addr).await;
    let start = tokio::time::Instant::now();
    let window = Window::open(&mesh);
    mesh.wait_failing(3).await;
    // The length of the outage, not a wait for a state.
    tokio::time::sleep(DOWN).await;

    let reads = accepts.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    let (calls, calls_b) = window.served(&mesh);
    assert_eq!(
        mesh.endpoints(),
        ["a", "b", "c"],
        "the last known set is kept"
    );
    assert!(calls_b > 0, "b keeps serving during the outage");
    let bound = max_failed_reads(pace.backoff, elapsed);
    assert!(
        (3..=bound).contains(&reads),
        "{reads} connections in {elapsed:?}, bound {bound}"
    );
    let per_minute = reads as f64 * 60.0 / elapsed.as_secs_f64();
    println!(
        "registry down: {calls} calls served ({calls_b} by b), {reads} registry \
         connections (bound {bound}, {per_minute:.0}/min at a 1 s backoff cap) in {elapsed:?}"
    );

    // A restarted registry without b (and with a lower index).
    dead.abort();
    let _ = dead.await;
    let dev = until_ok("restart the registry", || {
        ConsulDev::builder().http_addr(addr).start()
    })
    .await;
    for id in ["a", "c"] {
        register(&dev.url(), id, mesh.server(id).addr().port()).await;
    }
    mesh.dev = dev;
    mesh.assert_b_gone(300).await;
    mesh.finish().await;
}
