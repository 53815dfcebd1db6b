use std::collections::HashMap;

use super::*;
use proptest::prelude::*;

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

fn state() -> WatchState {
    WatchState::new(KeyLayout::Endpoints, "svc".to_owned())
}

fn summary(changes: &[Change<InstanceKey, Instance>]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c {
            Change::Insert(k, _) => format!("+{}", k.id()),
            Change::Remove(k) => format!("-{}", k.id()),
        })
        .collect()
}

#[test]
fn events_at_or_below_the_applied_revision_are_dropped() {
    let mut s = state();
    s.resync(10, [("svc/a".to_owned(), value(1))]);
    assert!(s.apply(vec![put("b", 9, 2), del("a", 10)]).is_empty());
    assert_eq!(s.keys(), ["svc/a"]);
    assert_eq!(summary(&s.apply(vec![put("b", 11, 2)])), ["+svc/b"]);
    assert_eq!(s.revision(), 11);
    // etcd 3.4.23 may send the same event again.
    assert!(s.apply(vec![put("b", 11, 2)]).is_empty());
}

#[test]
fn one_response_may_hold_several_events_of_one_revision() {
    let mut s = state();
    s.resync(1, []);
    let changes = s.apply(vec![put("a", 2, 1), put("b", 2, 2), del("a", 3)]);
    assert_eq!(summary(&changes), ["+svc/a", "+svc/b", "-svc/a"]);
    assert_eq!(s.revision(), 3);
}

#[test]
fn unchanged_puts_and_unknown_deletes_emit_nothing() {
    let mut s = state();
    s.resync(1, [("svc/a".to_owned(), value(1))]);
    assert!(s.apply(vec![put("a", 2, 1), del("zzz", 3)]).is_empty());
    assert_eq!(summary(&s.apply(vec![put("a", 4, 9)])), ["+svc/a"]);
}

#[test]
fn a_put_that_no_longer_decodes_removes_the_instance() {
    let mut s = state();
    s.resync(1, [("svc/a".to_owned(), value(1))]);
    let garbage = Event::Put {
        key: "svc/a".to_owned(),
        mod_revision: 2,
        value: b"not json".to_vec(),
    };
    assert_eq!(summary(&s.apply(vec![garbage])), ["-svc/a"]);
}

#[test]
fn resync_after_compaction_diffs_and_moves_the_revision() {
    let mut s = state();
    s.resync(
        5,
        [
            ("svc/a".to_owned(), value(1)),
            ("svc/b".to_owned(), value(2)),
        ],
    );
    let changes = s.resync(
        20,
        [
            ("svc/b".to_owned(), value(3)),
            ("svc/c".to_owned(), value(4)),
        ],
    );
    let mut got = summary(&changes);
    got.sort();
    assert_eq!(got, ["+svc/b", "+svc/c", "-svc/a"]);
    assert!(matches!(changes.last(), Some(Change::Remove(_))));
    assert_eq!(s.revision(), 20);
}

#[test]
fn progress_only_moves_forward() {
    let mut s = state();
    s.resync(7, []);
    s.progress(5);
    assert_eq!(s.revision(), 7);
    s.progress(9);
    assert_eq!(s.revision(), 9);
}

proptest! {
    /// Replaying the emitted changes gives the same set as the events in revision
    /// order, however the events are split, repeated or resumed.
    #[test]
    fn replayed_changes_match_the_store(
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
        let mut s = state();
        s.resync(1, []);
        let mut seen: HashMap<String, u16> = HashMap::new();
        let mut at = 0;
        for size in splits.iter().cycle() {
            if at >= events.len() { break; }
            let end = (at + size).min(events.len());
            // A resumed watch may deliver a few already-applied events again.
            let from = at.saturating_sub(repeat);
            for change in s.apply(events[from..end].to_vec()) {
                match change {
                    Change::Insert(k, i) => { seen.insert(k.id().to_owned(), i.port()); }
                    Change::Remove(k) => { prop_assert!(seen.remove(k.id()).is_some()); }
                }
            }
            at = end;
        }
        prop_assert_eq!(seen, store);
    }
}
