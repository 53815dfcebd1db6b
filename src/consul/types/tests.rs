//! Decoding tests on the documented sample (tests/fixtures/consul, copied from
//! Consul's API docs) and on the shapes live agents produce.

use super::*;

const DOC_SAMPLE: &str = include_str!("../../../tests/fixtures/consul/health-service.json");

fn one(body: &str, kind: &AddressKind) -> Instance {
    let mut v = decode_health(body.as_bytes(), kind, HealthFilter::Passing).expect("decodes");
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0)
}

#[test]
fn decodes_the_documented_sample() {
    let i = one(DOC_SAMPLE, &AddressKind::Service);
    assert_eq!(i.key(), &InstanceKey::new("foobar", "redis"));
    assert_eq!(i.authority(), "10.1.10.12:8000");
    assert_eq!(i.tags(), ["primary"]);
    assert_eq!(
        i.meta().get("redis_version").map(String::as_str),
        Some("4.0")
    );
    assert_eq!(i.weight(), 10);
}

#[test]
fn selects_tagged_addresses_with_lowercase_keys() {
    let i = one(DOC_SAMPLE, &AddressKind::wan());
    assert_eq!(i.authority(), "198.18.1.2:80");
    let i = one(DOC_SAMPLE, &AddressKind::lan());
    assert_eq!(i.authority(), "10.1.10.12:8000");
}

#[test]
fn tagged_address_falls_back_to_node_then_default() {
    let body = r#"[{"Node":{"Node":"n1","Address":"10.0.0.1","TaggedAddresses":{"wan":"203.0.113.9"}},
        "Service":{"ID":"a","Port":9000,"TaggedAddresses":{"lan_ipv4":{"Address":"10.0.0.7","Port":0}}},
        "Checks":[]}]"#;
    assert_eq!(
        one(body, &AddressKind::wan()).authority(),
        "203.0.113.9:9000"
    );
    assert_eq!(
        one(body, &AddressKind::tagged("lan_ipv4")).authority(),
        "10.0.0.7:9000"
    );
    assert_eq!(
        one(body, &AddressKind::tagged("nope")).authority(),
        "10.0.0.1:9000"
    );
}

#[test]
fn empty_service_address_uses_node_address() {
    let body = r#"[{"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":{"ID":"a","Address":"","Port":1}}]"#;
    assert_eq!(one(body, &AddressKind::Service).authority(), "10.0.0.1:1");
}

#[test]
fn ipv6_is_kept_unbracketed() {
    let body = r#"[{"Node":{"Node":"n1"},"Service":{"ID":"a","Address":"::1","Port":50051}}]"#;
    let i = one(body, &AddressKind::Service);
    assert_eq!(i.host(), "::1");
    assert_eq!(i.authority(), "[::1]:50051");
}

#[test]
fn tolerates_nulls_and_missing_fields() {
    let body = r#"[{"Node":{"Node":"n1","Address":"10.0.0.1","TaggedAddresses":null,"Meta":null},
        "Service":{"ID":"a","Port":1,"Tags":null,"Meta":null,"TaggedAddresses":null,"Weights":null},
        "Checks":null,"Extra":{"x":1}}]"#;
    let i = one(body, &AddressKind::Service);
    assert_eq!(i.port(), 1);
    assert!(i.tags().is_empty() && i.meta().is_empty());
    assert_eq!(i.weight(), 1, "absent weight counts as 1");
    assert!(
        decode_health(b"null", &AddressKind::Service, HealthFilter::Passing)
            .unwrap()
            .is_empty()
    );
    assert!(
        decode_health(b"[]", &AddressKind::Service, HealthFilter::Passing)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn drops_non_passing_and_undialable_entries() {
    let body = r#"[
        {"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":{"ID":"ok","Port":1},"Checks":[{"Status":"passing"}]},
        {"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":{"ID":"warn","Port":1},"Checks":[{"Status":"warning"}]},
        {"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":{"ID":"bigport","Port":70000}},
        {"Node":{"Node":"n1"},"Service":{"ID":"noaddr","Port":1}},
        {"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":{"ID":"noport"}},
        {"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":{"ID":"","Port":1}}]"#;
    let ids = |v: Vec<Instance>| v.iter().map(|i| i.id().to_owned()).collect::<Vec<_>>();
    let k = AddressKind::Service;
    assert_eq!(
        ids(decode_health(body.as_bytes(), &k, HealthFilter::Passing).unwrap()),
        ["ok"]
    );
    assert_eq!(
        ids(decode_health(body.as_bytes(), &k, HealthFilter::Any).unwrap()),
        ["ok", "warn"]
    );
}

#[test]
fn garbage_is_a_typed_decode_error() {
    for body in [
        &b"\xff\x00garbage"[..],
        b"{\"Node\":1}",
        b"[1,2]",
        b"",
        b"[{\"Service\":{\"Port\":\"x\"}}]",
    ] {
        let err = decode_health(body, &AddressKind::Service, HealthFilter::Passing).unwrap_err();
        assert!(err.is_decode(), "{err:?}");
    }
}

mod properties {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    /// Arbitrary JSON, nested up to 3 levels, with Consul's field names as likely keys.
    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        let key = prop_oneof![
            Just("Node".to_owned()),
            Just("Service".to_owned()),
            Just("Checks".to_owned()),
            Just("Address".to_owned()),
            Just("Port".to_owned()),
            Just("ID".to_owned()),
            Just("Status".to_owned()),
            Just("TaggedAddresses".to_owned()),
            Just("Tags".to_owned()),
            Just("Meta".to_owned()),
            Just("Weights".to_owned()),
            "[a-z]{1,6}",
        ];
        leaf.prop_recursive(3, 24, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Decodes with every address kind and checks each answer: an error is a decode
    /// error, a success came from a JSON array (or `null`) and holds only dialable
    /// instances.
    fn decodes_consistently(body: &[u8]) -> Result<(), TestCaseError> {
        for kind in [AddressKind::Service, AddressKind::lan(), AddressKind::wan()] {
            for filter in [
                HealthFilter::Passing,
                HealthFilter::PassingOrWarning,
                HealthFilter::Any,
            ] {
                match decode_health(body, &kind, filter) {
                    Err(e) => prop_assert!(e.is_decode(), "{e:?}"),
                    Ok(instances) => {
                        // Skipped fields are not checked for UTF-8 (serde_json ignores
                        // them unparsed), so only the outer shape is asserted.
                        let start = body.trim_ascii_start();
                        prop_assert!(start.starts_with(b"[") || start.starts_with(b"null"));
                        for i in instances {
                            prop_assert!(i.port() != 0 && !i.host().is_empty(), "{i:?}");
                        }
                    }
                }
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            decodes_consistently(&body)?;
        }

        #[test]
        fn arbitrary_json_never_panics(entries in prop::collection::vec(arb_json(), 0..4)) {
            decodes_consistently(&serde_json::to_vec(&entries).unwrap())?;
            decodes_consistently(&serde_json::to_vec(&entries.first()).unwrap())?;
        }

        #[test]
        fn a_truncated_answer_is_a_decode_error(cut in 0..DOC_SAMPLE.trim_end().len()) {
            let body = &DOC_SAMPLE.as_bytes()[..cut];
            let err = decode_health(body, &AddressKind::Service, HealthFilter::Passing).unwrap_err();
            prop_assert!(err.is_decode(), "{err:?}");
        }

        #[test]
        fn a_corrupted_answer_never_panics(at in 0..DOC_SAMPLE.len(), byte in any::<u8>()) {
            let mut body = DOC_SAMPLE.as_bytes().to_vec();
            body[at] = byte;
            decodes_consistently(&body)?;
        }
    }
}

#[test]
fn locality_and_warning_weights_are_decoded() {
    let body = r#"[
        {"Node":{"Node":"n1","Address":"10.0.0.1"},
         "Service":{"ID":"ok","Port":1,"Weights":{"Passing":4,"Warning":2},
                    "Locality":{"Region":"eu-west-1","Zone":"eu-west-1a"}},
         "Checks":[{"Status":"passing"}]},
        {"Node":{"Node":"n1","Address":"10.0.0.1"},
         "Service":{"ID":"warn","Port":1,"Weights":{"Passing":4,"Warning":2},"Locality":null},
         "Checks":[{"Status":"passing"},{"Status":"warning"}]},
        {"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":{"ID":"crit","Port":1},
         "Checks":[{"Status":"warning"},{"Status":"critical"}]}]"#;
    let k = AddressKind::Service;
    let all = decode_health_keeping(body.as_bytes(), &k, HealthFilter::Any).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].weight(), 4);
    assert_eq!(all[0].locality().region(), Some("eu-west-1"));
    assert_eq!(all[0].locality().zone(), Some("eu-west-1a"));
    assert_eq!(
        all[1].weight(),
        2,
        "warning instances weigh Weights.Warning"
    );
    assert!(all[1].locality().is_unknown());
    let kept = decode_health_keeping(body.as_bytes(), &k, HealthFilter::PassingOrWarning).unwrap();
    let ids: Vec<_> = kept.iter().map(|i| i.id().to_owned()).collect();
    assert_eq!(ids, ["ok", "warn"]);
    let passing = decode_health_keeping(body.as_bytes(), &k, HealthFilter::Passing).unwrap();
    assert_eq!(passing.len(), 1);
}
