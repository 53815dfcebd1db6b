//! The loop's rules, under tokio's paused clock with a mock transport.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout};
use tower_test::mock;

use super::*;
use crate::instance::Instance;
use crate::source::shared::Watch;
use crate::source::{WatchState, Watches};

type WatchHandle = Watch;

/// Subscribes to `query`'s watch over `transport()`.
fn subscribe<S>(
    watches: &Watches<QueryOptions>,
    query: QueryOptions,
    config: WatchConfig,
    transport: impl FnOnce() -> S,
) -> Arc<Watch>
where
    S: Service<WatchRequest, Response = WatchResponse> + Send + 'static,
    S::Error: Into<BoxError> + Send,
    S::Future: Send,
{
    let source = || ConsulSource {
        transport: transport(),
        query: Arc::new(query.clone()),
        config,
    };
    watches.subscribe(query.clone(), "test", tracing::Span::none(), source)
}

type Handle = mock::Handle<WatchRequest, WatchResponse>;

const WAIT: Duration = Duration::from_secs(60);
const MARGIN: Duration = Duration::from_secs(10);
const REQUERY: Duration = Duration::from_secs(1);

fn config(backoff: Backoff) -> WatchConfig {
    WatchConfig {
        backoff,
        requery_interval: REQUERY,
        margin: MARGIN,
        permits: None,
    }
}

fn query() -> QueryOptions {
    let mut q = QueryOptions::new("echo");
    q.wait = WAIT;
    q
}

/// Starts a watch over a mock transport.
fn start(backoff: Backoff) -> (Arc<WatchHandle>, Handle) {
    let (svc, handle) = mock::pair::<WatchRequest, WatchResponse>();
    let watches = Watches::default();
    (
        subscribe(&watches, query(), config(backoff), || svc),
        handle,
    )
}

fn body(ids: &[&str]) -> Bytes {
    let entries: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(r#"{{"Node":{{"Node":"n1","Address":"127.0.0.1"}},"Service":{{"ID":"{id}","Port":7000}},"Checks":[]}}"#)
        })
        .collect();
    Bytes::from(format!("[{}]", entries.join(",")))
}

fn resp(index: Option<u64>, ids: &[&str]) -> WatchResponse {
    WatchResponse {
        index,
        body: body(ids),
    }
}

/// Answers the next request and returns the index it carried.
async fn answer(handle: &mut Handle, r: WatchResponse) -> Option<u64> {
    let (req, send) = handle.next_request().await.expect("a request");
    send.send_response(r);
    req.index
}

/// The index of the next request, which is left unanswered.
async fn next_index(handle: &mut Handle) -> Option<u64> {
    let (req, _send) = handle.next_request().await.expect("a request");
    req.index
}

fn ids(state: &WatchState) -> Vec<&str> {
    state.instances().iter().map(Instance::id).collect()
}

#[test]
fn timeout_covers_wait_jitter_and_margin() {
    let t = read_timeout(Duration::from_secs(320), MARGIN, true);
    assert_eq!(t, Duration::from_secs(320 + 20 + 10));
    assert_eq!(
        read_timeout(Duration::from_secs(320), MARGIN, false),
        MARGIN
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn first_read_is_fresh_then_blocks_on_the_returned_index() {
    let (watch, mut h) = start(Backoff::default());
    let (req, send) = h.next_request().await.unwrap();
    assert_eq!(req.index, None);
    assert_eq!(req.timeout, MARGIN);
    send.send_response(resp(Some(7), &["a"]));
    let (req, _send) = h.next_request().await.unwrap();
    assert_eq!(req.index, Some(7));
    assert_eq!(req.timeout, WAIT + WAIT / 16 + MARGIN);
    let state = watch.receiver().borrow().clone();
    assert_eq!((state.position(), ids(&state)), (7, vec!["a"]));
    assert!(state.is_synced());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn index_going_backwards_resets_to_a_fresh_read() {
    let (_watch, mut h) = start(Backoff::default());
    assert_eq!(answer(&mut h, resp(Some(10), &["a"])).await, None);
    assert_eq!(answer(&mut h, resp(Some(3), &["a"])).await, Some(10));
    assert_eq!(
        answer(&mut h, resp(Some(4), &["a"])).await,
        None,
        "reset after 10 -> 3"
    );
    assert_eq!(next_index(&mut h).await, Some(4));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn zero_or_missing_index_is_never_sent_as_a_wait() {
    let (_watch, mut h) = start(Backoff::default());
    assert_eq!(answer(&mut h, resp(Some(0), &["a"])).await, None);
    assert_eq!(answer(&mut h, resp(None, &["a"])).await, None);
    assert_eq!(answer(&mut h, resp(Some(5), &["a"])).await, None);
    assert_eq!(next_index(&mut h).await, Some(5));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn unmoved_index_is_rate_limited_after_a_burst_of_two() {
    let (_watch, mut h) = start(Backoff::default());
    answer(&mut h, resp(Some(5), &["a"])).await; // moved 0 -> 5: free
    // Two re-queries with the same index pass at once (the burst)…
    let start = Instant::now();
    answer(&mut h, resp(Some(5), &["a"])).await;
    answer(&mut h, resp(Some(5), &["a"])).await;
    answer(&mut h, resp(Some(5), &["a"])).await;
    assert_eq!(Instant::now(), start, "burst of two is not delayed");
    // …then each waits one refill interval.
    for _ in 0..3 {
        let before = Instant::now();
        let early = timeout(REQUERY - Duration::from_millis(1), h.next_request()).await;
        assert!(early.is_err(), "re-query before the bucket refilled");
        let (req, send) = h.next_request().await.unwrap();
        assert_eq!(req.index, Some(5));
        assert_eq!(Instant::now() - before, REQUERY);
        send.send_response(resp(Some(5), &["a"]));
    }
    // A moving index is never delayed.
    answer(&mut h, resp(Some(6), &["a"])).await;
    let before = Instant::now();
    answer(&mut h, resp(Some(7), &["a"])).await;
    assert_eq!(next_index(&mut h).await, Some(7));
    assert_eq!(Instant::now(), before);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn errors_back_off_within_bounds_keep_instances_and_drop_the_index() {
    let min = Duration::from_millis(100);
    let (watch, mut h) = start(Backoff::new(min, 4 * min).jitter(0.5));
    answer(&mut h, resp(Some(9), &["a", "b"])).await;
    let (mut req, mut send) = h.next_request().await.unwrap();
    assert_eq!(req.index, Some(9));
    for failures in 1..=5u32 {
        send.send_error(Error::http_status(500, "No cluster leader"));
        let sent = Instant::now();
        (req, send) = h.next_request().await.unwrap();
        let waited = Instant::now() - sent;
        let base = (min * 2u32.pow(failures - 1)).min(4 * min);
        assert!(
            waited >= base / 2 && waited <= base,
            "{failures}: {waited:?} vs {base:?}"
        );
        assert_eq!(req.index, None, "retries without index");
        let state = watch.receiver().borrow().clone();
        assert_eq!(state.consecutive_failures(), failures);
        assert!(state.last_error().unwrap().contains("No cluster leader"));
        assert_eq!(ids(&state), ["a", "b"], "keeps the last known set");
    }
    send.send_response(resp(Some(9), &["a", "b"]));
    let _ = next_index(&mut h).await;
    let state = watch.receiver().borrow().clone();
    assert_eq!(state.consecutive_failures(), 0);
    assert!(state.last_error().is_none());
}

/// A registry down for ten minutes (the paused clock makes them instant), with the
/// default backoff (250 ms to 30 s, jitter 0.2): the reads stay under what the
/// shortest jittered delays allow, the watch never gives up, and it keeps the set.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_registry_down_for_ten_minutes_is_read_a_bounded_number_of_times() {
    let backoff = WatchConfig::default().backoff;
    let (watch, mut h) = start(backoff);
    answer(&mut h, resp(Some(9), &["a", "b"])).await;
    let down = Instant::now();
    let (mut reads, mut first_minute) = (0u32, 0u32);
    let (_, mut send) = h.next_request().await.unwrap();
    while down.elapsed() < Duration::from_secs(600) {
        send.send_error(Error::http_status(500, "No cluster leader"));
        (_, send) = h.next_request().await.unwrap();
        reads += 1;
        if down.elapsed() < Duration::from_secs(60) {
            first_minute += 1;
        }
    }
    // Shortest delays: 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8 s, then 24 s each.
    assert!(
        first_minute <= 7 + 2,
        "{first_minute} reads in the first minute"
    );
    assert!(
        (20..=7 + 24 + 2).contains(&reads),
        "{reads} reads in ten minutes"
    );
    let state = watch.receiver().borrow().clone();
    assert_eq!(ids(&state), ["a", "b"], "keeps the last known set");
    assert_eq!(state.consecutive_failures(), reads);
    send.send_response(resp(Some(2), &["a"]));
    let _ = next_index(&mut h).await;
    assert_eq!(ids(&watch.receiver().borrow()), ["a"], "recovers at once");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hung_read_times_out_and_retries_fresh() {
    let (watch, mut h) = start(Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(1),
    ));
    answer(&mut h, resp(Some(3), &["a"])).await;
    let (req, _never_answered) = h.next_request().await.unwrap();
    let sent = Instant::now();
    let (retry, _send) = h.next_request().await.unwrap();
    assert!(Instant::now() - sent >= req.timeout);
    assert_eq!(retry.index, None);
    let state = watch.receiver().borrow().clone();
    assert!(
        state.last_error().unwrap().contains("no answer"),
        "{state:?}"
    );
    assert_eq!(ids(&state), ["a"]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn garbage_body_counts_as_a_failure_not_a_panic() {
    let (watch, mut h) = start(Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(1),
    ));
    answer(&mut h, resp(Some(3), &["a"])).await;
    let garbage = WatchResponse {
        index: Some(4),
        body: Bytes::from_static(b"\x00\xffnot json"),
    };
    assert_eq!(answer(&mut h, garbage).await, Some(3));
    assert_eq!(next_index(&mut h).await, None);
    let state = watch.receiver().borrow().clone();
    assert!(
        state.last_error().unwrap().contains("undecodable"),
        "{state:?}"
    );
    assert_eq!(ids(&state), ["a"]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_watch_per_query_ends_with_its_last_subscriber() {
    let watches = Watches::default();
    let (svc, mut h) = mock::pair::<WatchRequest, WatchResponse>();
    let mut svc = Some(svc);
    let mut transport = || svc.take().expect("one transport per watch");
    let first = subscribe(
        &watches,
        query(),
        config(Backoff::default()),
        &mut transport,
    );
    let second = subscribe(
        &watches,
        query(),
        config(Backoff::default()),
        &mut transport,
    );
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(watches.len(), 1);

    let (other_svc, _other) = mock::pair::<WatchRequest, WatchResponse>();
    let mut tagged = query();
    tagged.tags.push("v2".into());
    let third = subscribe(&watches, tagged, config(Backoff::default()), || other_svc);
    assert_eq!(watches.len(), 2);
    drop(third);
    assert_eq!(watches.len(), 1);

    answer(&mut h, resp(Some(1), &["a"])).await;
    drop(first);
    assert!(
        h.next_request().await.is_some(),
        "still running for the second"
    );
    drop(second);
    assert_eq!(watches.len(), 0);
    // The task was aborted and dropped its transport: the request stream ends.
    assert!(h.next_request().await.is_none());
}

#[test]
fn a_watch_whose_runtime_ended_is_replaced() {
    let watches = Watches::default();
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let (svc, _h1) = mock::pair::<WatchRequest, WatchResponse>();
    let first = runtime()
        .block_on(async { subscribe(&watches, query(), config(Backoff::default()), || svc) });
    // That runtime is gone, and its task with it.
    let (svc, _h2) = mock::pair::<WatchRequest, WatchResponse>();
    let second = runtime()
        .block_on(async { subscribe(&watches, query(), config(Backoff::default()), || svc) });
    assert!(!Arc::ptr_eq(&first, &second));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn blocking_reads_queue_behind_the_clients_cap() {
    let permits = Arc::new(Semaphore::new(1));
    let cfg = WatchConfig {
        permits: Some(permits.clone()),
        ..config(Backoff::default())
    };
    let watches = Watches::default();
    let (svc_a, mut a) = mock::pair::<WatchRequest, WatchResponse>();
    let (svc_b, mut b) = mock::pair::<WatchRequest, WatchResponse>();
    let (mut qa, mut qb) = (query(), query());
    qa.service = "a".to_owned();
    qb.service = "b".to_owned();
    let _wa = subscribe(&watches, qa, cfg.clone(), || svc_a);
    let _wb = subscribe(&watches, qb, cfg, || svc_b);
    // Fresh reads take no permit: both go out at once.
    assert_eq!(answer(&mut a, resp(Some(1), &["a"])).await, None);
    assert_eq!(answer(&mut b, resp(Some(1), &["b"])).await, None);
    // One blocking read holds the only permit; the other waits, without failing.
    let (first, send, other) = tokio::select! {
        r = a.next_request() => (r, true, &mut b),
        r = b.next_request() => (r, false, &mut a),
    };
    let (req, send_first) = first.expect("a blocking read");
    assert_eq!(req.index, Some(1));
    assert_eq!(permits.available_permits(), 0);
    assert!(timeout(WAIT, other.next_request()).await.is_err());
    // The first read's answer frees the permit; the queued read goes out.
    send_first.send_response(resp(Some(2), &[if send { "a" } else { "b" }]));
    let (req, _pending) = other.next_request().await.expect("the queued read");
    assert_eq!(req.index, Some(1));
}
