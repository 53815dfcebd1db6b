//! The decoder must agree with `decode_health` on every answer, whatever the
//! previous answers were.

use proptest::prelude::*;

use super::*;
use crate::consul::decode_health;
use crate::consul::types::decode_health_keeping;

const DOC_SAMPLE: &str = include_str!("../../../tests/fixtures/consul/health-service.json");

fn entry(node: u8, id: u8, port: u16, passing: bool) -> String {
    entry_with(node, id, port, if passing { "passing" } else { "critical" })
}

fn entry_with(node: u8, id: u8, port: u16, status: &str) -> String {
    format!(
        r#"{{"Node":{{"Node":"n{node}","Address":"10.0.0.{node}"}},"Service":{{"ID":"s{id}","Port":{port},"Tags":["t{id}"],"Weights":{{"Passing":{id}}}}},"Checks":[{{"Status":"{status}","Output":"ok"}}]}}"#
    )
}

fn body(entries: &[String], sep: &str) -> String {
    format!("[{}]", entries.join(sep))
}

fn changed(d: Decoded) -> Vec<Instance> {
    match d {
        Decoded::Changed(v) => v,
        Decoded::Unchanged => panic!("expected a changed answer"),
    }
}

#[test]
fn decodes_the_documented_sample_like_decode_health() {
    let mut d = HealthDecoder::new(AddressKind::wan(), HealthFilter::Passing);
    let want = decode_health(
        DOC_SAMPLE.as_bytes(),
        &AddressKind::wan(),
        HealthFilter::Passing,
    )
    .unwrap();
    assert_eq!(changed(d.decode(DOC_SAMPLE.as_bytes()).unwrap()), want);
    assert!(matches!(
        d.decode(DOC_SAMPLE.as_bytes()).unwrap(),
        Decoded::Unchanged
    ));
}

#[test]
fn reports_an_unchanged_answer_despite_new_whitespace() {
    let entries = [entry(1, 1, 80, true), entry(2, 2, 81, true)];
    let mut d = HealthDecoder::new(AddressKind::Service, HealthFilter::Passing);
    assert_eq!(
        changed(d.decode(body(&entries, ",").as_bytes()).unwrap()).len(),
        2
    );
    let spaced = format!(" \n{}\n", body(&entries, " ,\n\t"));
    assert!(matches!(
        d.decode(spaced.as_bytes()).unwrap(),
        Decoded::Unchanged
    ));
}

#[test]
fn one_changed_entry_changes_one_instance() {
    let mut entries: Vec<String> = (0..50)
        .map(|i| entry(i % 3, i, 1000 + u16::from(i), true))
        .collect();
    let mut d = HealthDecoder::new(AddressKind::Service, HealthFilter::Passing);
    let before = changed(d.decode(body(&entries, ",").as_bytes()).unwrap());
    entries[20] = entry(20 % 3, 20, 9999, true);
    let after = changed(d.decode(body(&entries, ",").as_bytes()).unwrap());
    let differ: Vec<_> = before.iter().zip(&after).filter(|(a, b)| a != b).collect();
    assert_eq!(differ.len(), 1);
    assert_eq!(differ[0].1.port(), 9999);
}

#[test]
fn null_and_empty_answers_have_no_instances() {
    let mut d = HealthDecoder::new(AddressKind::Service, HealthFilter::Passing);
    assert!(
        changed(
            d.decode(body(&[entry(1, 1, 80, true)], ",").as_bytes())
                .unwrap()
        )
        .len()
            == 1
    );
    assert!(changed(d.decode(b" null ").unwrap()).is_empty());
    assert!(matches!(d.decode(b"[ ]").unwrap(), Decoded::Unchanged));
}

#[test]
fn malformed_answers_fail_and_keep_the_reference() {
    let entries = [entry(1, 1, 80, true), entry(2, 2, 81, true)];
    let good = body(&entries, ",");
    let mut d = HealthDecoder::new(AddressKind::Service, HealthFilter::Passing);
    changed(d.decode(good.as_bytes()).unwrap());
    let truncated = &good[..good.len() - 1];
    let doubled_comma = good.replacen("},{", "},,{", 1);
    let trailing = format!("{good}x");
    let missing_comma = good.replacen("},{", "} {", 1);
    for bad in [
        truncated,
        &doubled_comma,
        &trailing,
        &missing_comma,
        "{}",
        "[1]",
        "",
    ] {
        let err = d.decode(bad.as_bytes()).unwrap_err();
        assert!(err.is_decode(), "{bad}: {err}");
        assert!(
            decode_health(bad.as_bytes(), &AddressKind::Service, HealthFilter::Passing).is_err(),
            "{bad}"
        );
    }
    assert!(matches!(
        d.decode(good.as_bytes()).unwrap(),
        Decoded::Unchanged
    ));
}

fn arb_answer() -> impl Strategy<Value = (Vec<String>, bool, bool)> {
    let one = (
        0u8..4,
        0u8..12,
        prop_oneof![Just(0u16), 1u16..4],
        any::<bool>(),
    );
    (
        prop::collection::vec(one, 0..10),
        any::<bool>(),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(v, spaced, truncate)| {
            let entries = v
                .into_iter()
                .map(|(n, i, p, ok)| entry(n, i, p, ok))
                .collect();
            (entries, spaced, truncate)
        })
}

proptest! {
    /// Every answer decodes to what `decode_health` gives, and `Unchanged` means
    /// exactly that: the same instances as the last successful answer.
    #[test]
    fn agrees_with_decode_health(
        answers in prop::collection::vec(arb_answer(), 1..12),
        keep in prop_oneof![Just(HealthFilter::Passing), Just(HealthFilter::PassingOrWarning), Just(HealthFilter::Any)],
    ) {
        let mut d = HealthDecoder::new(AddressKind::Service, keep);
        let mut last: Option<Vec<Instance>> = None;
        for (entries, spaced, truncate) in answers {
            let mut text = body(&entries, if spaced { " ,\n " } else { "," });
            if truncate {
                text.truncate(text.len() / 2);
            }
            let want = decode_health_keeping(text.as_bytes(), &AddressKind::Service, keep);
            match (d.decode(text.as_bytes()), want) {
                (Ok(Decoded::Changed(got)), Ok(want)) => {
                    prop_assert_eq!(&got, &want);
                    last = Some(want);
                }
                (Ok(Decoded::Unchanged), Ok(want)) => {
                    prop_assert_eq!(last.as_ref(), Some(&want));
                }
                (Err(_), Err(_)) => {}
                (got, want) => prop_assert!(false, "{text}: {got:?} vs {want:?}"),
            }
        }
    }
}
