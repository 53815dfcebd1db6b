//! The change stream over a mock transport, under tokio's paused clock.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio_test::{assert_pending, task};
use tower_test::mock;

use super::*;
use crate::consul::query::{WatchRequest, WatchResponse};
use crate::error::Error;
use crate::source::Watches;
use tower::discover::Change;

type Handle = mock::Handle<WatchRequest, WatchResponse>;
type Mock = mock::Mock<WatchRequest, WatchResponse>;

fn subscribe(watches: &Watches<QueryOptions>, config: WatchConfig, svc: Mock) -> Discovery {
    let query = QueryOptions::new("echo");
    Discovery::shared(watches, query.clone(), "echo", || ConsulSource {
        transport: svc,
        query: Arc::new(query),
        config,
    })
}

fn discovery() -> (Discovery, Handle, Watches<QueryOptions>) {
    let (svc, handle) = mock::pair::<WatchRequest, WatchResponse>();
    let watches = Watches::default();
    let config = WatchConfig {
        backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
        ..WatchConfig::default()
    };
    let d = subscribe(&watches, config, svc);
    (d, handle, watches)
}

fn resp(index: u64, instances: &[(&str, u16)]) -> WatchResponse {
    let entries: Vec<String> = instances
        .iter()
        .map(|(id, port)| {
            format!(r#"{{"Node":{{"Node":"n1","Address":"127.0.0.1"}},"Service":{{"ID":"{id}","Port":{port}}}}}"#)
        })
        .collect();
    WatchResponse {
        index: Some(index),
        body: Bytes::from(format!("[{}]", entries.join(","))),
    }
}

async fn answer(h: &mut Handle, r: WatchResponse) {
    h.next_request()
        .await
        .expect("a request")
        .1
        .send_response(r);
}

async fn next_change(d: &mut Discovery) -> String {
    match d.next().await.expect("never ends").expect("never an error") {
        Change::Insert(k, i) => format!("+{}@{}", k.id(), i.port()),
        Change::Remove(k) => format!("-{}", k.id()),
    }
}

async fn changes(d: &mut Discovery, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(next_change(d).await);
    }
    out.sort();
    out
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn emits_only_real_differences() {
    let (mut d, mut h, _w) = discovery();
    answer(&mut h, resp(1, &[("a", 1), ("b", 2)])).await;
    assert_eq!(changes(&mut d, 2).await, ["+a@1", "+b@2"]);
    answer(&mut h, resp(2, &[("b", 2), ("a", 1)])).await; // same set, new index
    answer(&mut h, resp(3, &[("a", 9), ("c", 3)])).await;
    assert_eq!(changes(&mut d, 3).await, ["+a@9", "+c@3", "-b"]);
    h.next_request().await.unwrap(); // the loop went on: nothing else is queued
    assert_pending!(task::spawn(&mut d).poll_next());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn nothing_is_emitted_before_the_first_answer() {
    let (d, mut h, _w) = discovery();
    let mut d = task::spawn(d);
    assert_pending!(d.poll_next());
    let (_req, send) = h.next_request().await.unwrap();
    send.send_error(Error::http_status(500, "No cluster leader"));
    h.next_request().await.unwrap();
    assert_pending!(d.poll_next(), "an unknown set is not an empty set");
    assert!(!d.state().is_synced());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn outage_keeps_the_set_and_yields_no_error() {
    let (mut d, mut h, _w) = discovery();
    answer(&mut h, resp(1, &[("a", 1)])).await;
    assert_eq!(next_change(&mut d).await, "+a@1");
    for _ in 0..5 {
        let (_req, send) = h.next_request().await.unwrap();
        send.send_error(Error::transport(
            "connect",
            std::io::Error::other("refused"),
        ));
    }
    h.next_request().await.unwrap();
    assert_pending!(task::spawn(&mut d).poll_next());
    let state = d.state();
    assert_eq!(state.consecutive_failures(), 5);
    assert_eq!(state.instances().len(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn empty_service_drains_to_empty() {
    let (mut d, mut h, _w) = discovery();
    answer(&mut h, resp(1, &[("a", 1), ("b", 1)])).await;
    changes(&mut d, 2).await;
    answer(&mut h, resp(2, &[])).await;
    assert_eq!(changes(&mut d, 2).await, ["-a", "-b"]);
    answer(&mut h, resp(3, &[("a", 1)])).await;
    assert_eq!(next_change(&mut d).await, "+a@1");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_late_subscriber_starts_from_the_current_set() {
    let (mut first, mut h, watches) = discovery();
    answer(&mut h, resp(1, &[("a", 1)])).await;
    assert_eq!(next_change(&mut first).await, "+a@1");
    let (unused, _) = mock::pair::<WatchRequest, WatchResponse>();
    let config = WatchConfig::default();
    let mut second = subscribe(&watches, config, unused);
    assert_eq!(next_change(&mut second).await, "+a@1");
}

#[test]
fn built_outside_a_runtime_starts_on_first_poll() {
    let (mut d, mut h, _w) = discovery();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        assert_pending!(task::spawn(&mut d).poll_next());
        answer(&mut h, resp(1, &[("a", 1)])).await;
        assert_eq!(next_change(&mut d).await, "+a@1");
    });
}
