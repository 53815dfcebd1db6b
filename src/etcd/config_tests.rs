use super::*;

fn put(revision: i64, value: &str) -> Event {
    Event::Put {
        key: "service-config/echo".to_owned(),
        mod_revision: revision,
        value: value.as_bytes().to_vec(),
    }
}

fn delete(revision: i64) -> Event {
    Event::Delete {
        key: "service-config/echo".to_owned(),
        mod_revision: revision,
    }
}

fn document() -> Document {
    Document::new("service-config/echo".to_owned())
}

/// The update as the consumer sees it: `Ok(Some(text))`, `Ok(None)`, or the error's
/// message.
fn seen(update: Option<ConfigUpdate>) -> Option<Result<Option<String>, String>> {
    update.map(|u| u.map_err(|e| e.to_string()))
}

fn doc(text: &str) -> Option<Result<Option<String>, String>> {
    Some(Ok(Some(text.to_owned())))
}

#[test]
fn an_absent_key_is_no_document_first() {
    let mut d = document();
    assert_eq!(seen(d.read(7, None)), Some(Ok(None)));
    assert_eq!(d.revision, 7);
    assert_eq!(seen(d.apply(vec![put(8, "{}")])), doc("{}"));
    assert_eq!(d.revision, 8);
}

#[test]
fn only_changes_are_yielded() {
    let mut d = document();
    assert_eq!(seen(d.read(3, Some(b"a".to_vec()))), doc("a"));
    // Put again with the same value, or read again after a reconnect: nothing.
    assert_eq!(seen(d.apply(vec![put(4, "a")])), None);
    assert_eq!(seen(d.read(4, Some(b"a".to_vec()))), None);
    assert_eq!(seen(d.apply(vec![put(5, "b")])), doc("b"));
    assert_eq!(seen(d.apply(vec![delete(6)])), Some(Ok(None)));
    assert_eq!(seen(d.apply(vec![delete(7)])), None);
    assert_eq!(seen(d.read(7, None)), None);
    assert_eq!(seen(d.apply(vec![put(8, "b")])), doc("b"));
}

#[test]
fn the_last_new_event_of_a_response_wins_and_old_ones_are_dropped() {
    let mut d = document();
    assert_eq!(seen(d.read(10, Some(b"a".to_vec()))), doc("a"));
    // etcd 3.4 may repeat events at or below the applied revision.
    assert_eq!(seen(d.apply(vec![put(9, "old"), delete(10)])), None);
    assert_eq!(d.revision, 10);
    assert_eq!(seen(d.apply(vec![put(11, "b"), put(12, "c")])), doc("c"));
    assert_eq!(
        seen(d.apply(vec![put(12, "c"), delete(13)])),
        Some(Ok(None))
    );
    assert_eq!(d.revision, 13);
    // A progress-only or empty response changes nothing.
    assert_eq!(seen(d.apply(Vec::new())), None);
}

#[test]
fn a_value_that_is_not_utf8_is_an_error_naming_the_key() {
    let mut d = document();
    let update = d.read(2, Some(vec![b'{', 0xff, b'}'])).expect("an update");
    let e = update.expect_err("not UTF-8");
    assert!(
        e.downcast_ref::<Error>().is_some_and(Error::is_decode),
        "{e}"
    );
    assert!(e.to_string().contains("service-config/echo"), "{e}");
    // The same bytes again: no second error; a good value afterwards is yielded.
    let again = Event::Put {
        key: "service-config/echo".to_owned(),
        mod_revision: 3,
        value: vec![b'{', 0xff, b'}'],
    };
    assert!(d.apply(vec![again]).is_none());
    assert_eq!(seen(d.apply(vec![put(4, "{}")])), doc("{}"));
}

#[test]
fn the_default_key_is_beside_the_instances_prefix() {
    let key = default_key("echo");
    assert_eq!(key, "service-config/echo");
    let prefix = super::super::KeyLayout::Endpoints.prefix("echo");
    assert!(!key.starts_with(&prefix), "{key} under {prefix}");
}
