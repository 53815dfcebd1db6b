//! Registry faults that still answer `200`, under load through the balanced
//! channel: the index reset to a lower value and to 0 (a registry restored from an
//! older snapshot), `X-Consul-Index: 0`, a wrong content type, and spurious
//! wake-ups with unchanged data.
//!
//! What we want to test: the watch keeps following the registry (`b` turning
//! critical during the fault leaves the channel), no call fails or reaches `b`
//! afterwards, discovery yields no error, nothing reconnects on unchanged data, and
//! reads that do not move the index stay under the re-query pacing bound.

mod faults_common;
mod support;

use consul_dev::{Fault, FaultRule};
use faults_common::{Mesh, Pace, T, Window, max_paced_reads};
use support::eventually;

/// Resets the index to `to` (below the current one), then turns `b` critical.
async fn index_reset(to: u64) {
    support::trace_init();
    let pace = Pace::default();
    let mesh = Mesh::start(pace).await;
    let before = mesh.dev.index();
    assert!(before > to + 2, "the registry has moved past {to}");
    let window = Window::open(&mesh);
    mesh.dev.faults().reset_index(to);
    eventually(T, "the watch follows the lower index", || async {
        let index = mesh.probe.state().position();
        index > 0 && index < before
    })
    .await;
    // The watch is blocked on the low index: a write must wake it at once, though
    // the index stays below what it saw before (wait is 60 s, longer than T).
    mesh.fail_b();
    mesh.assert_b_gone(300).await;
    let (reads, elapsed) = window.measure(&mesh);
    let bound = max_paced_reads(pace, 2, elapsed);
    assert!(
        reads <= bound,
        "{reads} reads in {elapsed:?}, bound {bound}"
    );
    let (calls, _) = window.served(&mesh);
    println!("index reset {before} -> {to}: {calls} calls served, {reads} reads in {elapsed:?}");
    mesh.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_reset_to_a_lower_value() {
    index_reset(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_reset_to_zero() {
    index_reset(0).await;
}

/// Keeps `fault` on while `b` turns critical and the load serves 600 more calls.
async fn followed_through(name: &str, fault: Fault) {
    support::trace_init();
    let pace = Pace::default();
    let mesh = Mesh::start(pace).await;
    let faults = mesh.dev.faults();
    let rule = faults.add(FaultRule::new(fault).path_prefix("/v1/health/"));
    let window = Window::open(&mesh);
    faults.spurious_wakeup(); // ends the blocking read in flight: the next one is faulty
    eventually(T, "the next read (faulty) is in flight", || async {
        window.measure(&mesh).0 >= 1
    })
    .await;
    mesh.fail_b();
    mesh.assert_b_gone(300).await;
    mesh.load.wait_for_more(300).await;
    let (reads, elapsed) = window.measure(&mesh);
    let bound = max_paced_reads(pace, 2, elapsed);
    assert!(
        reads <= bound,
        "{reads} reads in {elapsed:?}, bound {bound}"
    );
    let (calls, _) = window.served(&mesh);
    println!("{name}: {calls} calls served, {reads} reads (bound {bound}) in {elapsed:?}");
    faults.remove(rule);
    mesh.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_index_header() {
    followed_through("X-Consul-Index: 0", Fault::ZeroIndex).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_type() {
    followed_through("Content-Type: text/html", Fault::WrongContentType).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spurious_wakeups_change_nothing() {
    support::trace_init();
    let pace = Pace::default();
    let mesh = Mesh::start(pace).await;
    let accepted: Vec<u64> = (mesh.servers.iter())
        .map(|s| s.accepted_connections())
        .collect();
    let window = Window::open(&mesh);
    const WAKEUPS: u64 = 20;
    for _ in 0..WAKEUPS {
        let answers = mesh.probe.state().answers();
        mesh.dev.faults().spurious_wakeup();
        eventually(T, "the wake-up is answered", || async {
            mesh.probe.state().answers() > answers
        })
        .await;
    }
    mesh.load.wait_for_more(100).await;
    assert_eq!(mesh.ready(), ["a", "b", "c"]);
    let now: Vec<u64> = (mesh.servers.iter())
        .map(|s| s.accepted_connections())
        .collect();
    assert_eq!(now, accepted, "unchanged data reconnects nothing");
    let (reads, elapsed) = window.measure(&mesh);
    let bound = max_paced_reads(pace, WAKEUPS, elapsed);
    assert!(
        (WAKEUPS..=bound).contains(&reads),
        "{reads} reads in {elapsed:?}, bound {bound}"
    );
    println!("{WAKEUPS} spurious wake-ups: {reads} reads in {elapsed:?}");
    mesh.fail_b();
    mesh.assert_b_gone(300).await;
    mesh.finish().await;
}
