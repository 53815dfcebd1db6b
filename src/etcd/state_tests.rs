use std::collections::HashMap;

use super::*;
use crate::source::{Sink, WatchState};
use proptest::prelude::*;
use tokio::sync::watch;

fn value(port: u16) -> Vec<u8> {
    format!(r#"{{"Op":0,"Addr":"127.0.0.1:{port}","Metadata":null}}"#).into_bytes()
}

fn put(key: &str, rev: i64, port: u16) -> Event {
    Event::Put {
        key: format!("svc/{key}"),
        mod_revision: rev,
        value: value(port),
    }
}

fn del(key: &str, rev: i64) -> Event {
    Event::Delete {
        key: format!("svc/{key}"),
        mod_revision: rev,
    }
}

/// A cursor and the core's sink it reports to, as the watch task uses them.
struct Harness {
    cursor: Cursor,
    sink: Sink,
    rx: watch::Receiver<WatchState>,
}

impl Harness {
    fn new() -> Self {
        let (sink, rx) = Sink::detached("etcd");
        Harness {
            cursor: Cursor::new(KeyLayout::Endpoints, "svc".to_owned()),
            sink,
            rx,
        }
    }

    fn resync(&mut self, revision: i64, kvs: Vec<(&str, u16)>) {
        let kvs = kvs
            .into_iter()
            .map(|(k, port)| (format!("svc/{k}"), value(port)));
        self.sink.snapshot(self.cursor.resync(revision, kvs));
    }

    /// Applies one response; returns whether the published set changed.
    fn apply(&mut self, events: Vec<Event>) -> bool {
        let before = self.rx.borrow().generation();
        let delta = self.cursor.apply(events);
        self.sink.apply(delta.inserts, delta.removes);
        self.rx.borrow().generation() != before
    }

    /// The published set: key → port.
    fn set(&self) -> Vec<(String, u16)> {
        let state = self.rx.borrow();
        state
            .instances()
            .iter()
            .map(|i| (i.key().id().to_owned(), i.port()))
            .collect()
    }

    fn keys(&self) -> Vec<String> {
        self.set().into_iter().map(|(k, _)| k).collect()
    }
}

#[test]
fn events_at_or_below_the_applied_revision_are_dropped() {
    let mut h = Harness::new();
    h.resync(10, vec![("a", 1)]);
    assert!(!h.apply(vec![put("b", 9, 2), del("a", 10)]));
    assert_eq!(h.keys(), ["svc/a"]);
    assert!(h.apply(vec![put("b", 11, 2)]));
    assert_eq!(h.keys(), ["svc/a", "svc/b"]);
    assert_eq!(h.cursor.revision(), 11);
    // etcd 3.4.23 may send the same event again.
    assert_eq!(h.cursor.apply(vec![put("b", 11, 2)]), Delta::default());
}

#[test]
fn one_response_may_hold_several_events_of_one_revision() {
    let mut h = Harness::new();
    h.resync(1, vec![]);
    let delta = h
        .cursor
        .apply(vec![put("a", 2, 1), put("b", 2, 2), del("a", 3)]);
    // Net per key: `a` was put and deleted, so it is only removed.
    let inserted: Vec<_> = delta.inserts.iter().map(|i| i.key().id()).collect();
    assert_eq!(inserted, ["svc/b"]);
    assert_eq!(delta.removes, [InstanceKey::new("", "svc/a")]);
    assert_eq!(h.cursor.revision(), 3);
}

#[test]
fn a_put_then_delete_in_one_response_leaves_the_key_out() {
    let mut h = Harness::new();
    h.resync(1, vec![]);
    assert!(h.apply(vec![put("a", 2, 1), put("b", 2, 2), del("a", 3)]));
    assert_eq!(h.keys(), ["svc/b"]);
}

#[test]
fn unchanged_puts_and_unknown_deletes_change_nothing() {
    let mut h = Harness::new();
    h.resync(1, vec![("a", 1)]);
    assert!(!h.apply(vec![put("a", 2, 1), del("zzz", 3)]));
    assert!(h.apply(vec![put("a", 4, 9)]));
    assert_eq!(h.set(), [("svc/a".to_owned(), 9)]);
}

#[test]
fn a_put_that_no_longer_decodes_removes_the_instance() {
    let mut h = Harness::new();
    h.resync(1, vec![("a", 1)]);
    let garbage = Event::Put {
        key: "svc/a".to_owned(),
        mod_revision: 2,
        value: b"not json".to_vec(),
    };
    assert!(h.apply(vec![garbage]));
    assert!(h.keys().is_empty());
}

#[test]
fn resync_after_compaction_replaces_the_set_and_moves_the_revision() {
    let mut h = Harness::new();
    h.resync(5, vec![("a", 1), ("b", 2)]);
    h.resync(20, vec![("b", 3), ("c", 4)]);
    assert_eq!(h.set(), [("svc/b".to_owned(), 3), ("svc/c".to_owned(), 4)]);
    assert_eq!(h.cursor.revision(), 20);
}

#[test]
fn progress_only_moves_forward() {
    let mut h = Harness::new();
    h.resync(7, vec![]);
    h.cursor.progress(5);
    assert_eq!(h.cursor.revision(), 7);
    h.cursor.progress(9);
    assert_eq!(h.cursor.revision(), 9);
}

proptest! {
    /// The set the core publishes matches the store after the events in revision
    /// order, however the events are split, repeated or resumed.
    #[test]
    fn published_set_matches_the_store(
        ops in prop::collection::vec((0u8..4, prop::bool::ANY, 1u16..3), 1..30),
        splits in prop::collection::vec(1usize..4, 1..30),
        repeat in 0usize..5,
    ) {
        let events: Vec<Event> = ops.iter().enumerate().map(|(n, (k, is_put, port))| {
            let rev = n as i64 + 2;
            if *is_put { put(&k.to_string(), rev, *port) } else { del(&k.to_string(), rev) }
        }).collect();
        let mut store: HashMap<String, u16> = HashMap::new();
        for (k, is_put, port) in &ops {
            if *is_put { store.insert(format!("svc/{k}"), *port); } else { store.remove(&format!("svc/{k}")); }
        }
        let mut h = Harness::new();
        h.resync(1, vec![]);
        let mut at = 0;
        for size in splits.iter().cycle() {
            if at >= events.len() { break; }
            let end = (at + size).min(events.len());
            // A resumed watch may deliver a few already-applied events again.
            let from = at.saturating_sub(repeat);
            h.apply(events[from..end].to_vec());
            at = end;
        }
        let mut want: Vec<(String, u16)> = store.into_iter().collect();
        want.sort();
        prop_assert_eq!(h.set(), want);
    }
}
