//! Property tests: request decoding, the filter parser and Go durations take any
//! input without panicking, as a server on a network must.

use proptest::prelude::*;
use serde_json::Value;

use crate::agent::register::{decode_check, decode_service};
use crate::http::decode::parse_go_duration;

/// Any JSON value up to a small depth, with Consul's field names among the keys so
/// decoding goes past the unknown-field check.
fn json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("Name".to_owned()),
        Just("ID".to_owned()),
        Just("Port".to_owned()),
        Just("Tags".to_owned()),
        Just("Meta".to_owned()),
        Just("Check".to_owned()),
        Just("Checks".to_owned()),
        Just("TTL".to_owned()),
        Just("Interval".to_owned()),
        Just("HTTP".to_owned()),
        Just("Weights".to_owned()),
        Just("Passing".to_owned()),
        Just("Locality".to_owned()),
        Just("TaggedAddresses".to_owned()),
        Just("Address".to_owned()),
        Just("Status".to_owned()),
        "[a-zA-Z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("10s"),
            Just("1m30s"),
            Just("-5ms"),
            Just("9999999h"),
            Just("1e9s")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn service_decoding_never_panics(body in json()) {
        let _ = decode_service(&body, "node", std::time::Duration::from_secs(60));
    }

    #[test]
    fn check_decoding_never_panics(body in json()) {
        let _ = decode_check(&body, "CheckDefinition");
    }

    #[test]
    fn filter_parsing_and_evaluation_never_panic(src in "[ -~]{0,40}", value in json()) {
        if let Ok(expr) = crate::query::filter::parse(&src) {
            let _ = expr.eval(&value);
        }
    }

    #[test]
    fn filter_grammar_fragments_never_panic(
        src in r#"(Service|Tags|Meta\.[a-z]+|Checks\.Status|"[a-z]*"| |==|!=|in|not|and|or|contains|matches|is|empty|\(|\)){0,12}"#,
        value in json(),
    ) {
        if let Ok(expr) = crate::query::filter::parse(&src) {
            let _ = expr.eval(&value);
        }
    }

    #[test]
    fn durations_never_panic(src in "[-+0-9.a-zµ]{0,16}") {
        let _ = parse_go_duration(&src);
    }
}
