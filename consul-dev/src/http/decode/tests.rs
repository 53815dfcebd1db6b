//! Tests of body decoding.

use super::*;

#[test]
fn parses_go_durations() {
    assert_eq!(
        parse_go_duration("300000ms"),
        Some(Duration::from_secs(300))
    );
    assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
    assert_eq!(parse_go_duration("-5s"), Some(Duration::ZERO));
    assert_eq!(parse_go_duration("10"), None);
    assert_eq!(parse_go_duration("abc"), None);
    assert_eq!(parse_go_duration(""), None);
}

#[test]
fn duration_errors_read_as_gos() {
    assert_eq!(
        go_duration_error("10"),
        "time: missing unit in duration \"10\""
    );
    assert_eq!(
        go_duration_error("10x"),
        "time: unknown unit \"x\" in duration \"10x\""
    );
    assert_eq!(go_duration_error("abc"), "time: invalid duration \"abc\"");
    assert_eq!(
        go_duration_error("9999999h"),
        "time: invalid duration \"9999999h\""
    );
    assert_eq!(parse_go_duration("9999999h"), None);
}

#[test]
fn syntax_errors_read_as_gos() {
    assert_eq!(body_json(b"{\"Name\": ").unwrap_err(), "unexpected EOF");
    assert_eq!(
        body_json(b"xyz").unwrap_err(),
        "invalid character 'x' looking for beginning of value"
    );
    assert_eq!(
        body_json(b"{\"a\" 1}").unwrap_err(),
        "invalid character '1' after object key"
    );
    assert_eq!(
        body_json(b"{\"a\": 1 \"b\": 2}").unwrap_err(),
        "invalid character '\"' after object key:value pair"
    );
    // Like Go's Decoder, only the first value counts.
    assert_eq!(body_json(b"{} trailing").unwrap(), serde_json::json!({}));
    assert_eq!(body_json(b"  ").unwrap(), Value::Null);
}

proptest::proptest! {
    #[test]
    fn body_decoding_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
        let _ = body_json(&bytes);
    }

    #[test]
    fn json_text_decoding_never_panics(text in "[{}\\[\\]\":,a-z0-9 .-]{0,40}") {
        let _ = body_json(text.as_bytes());
    }
}

#[test]
fn maps_keys_case_insensitively_and_rejects_unknown() {
    let v: Value = serde_json::json!({"name": "a", "enable_tag_override": true});
    let f = fields(&v, "ServiceDefinition", &["Name", "EnableTagOverride"]).unwrap();
    assert_eq!(f.string("Name").unwrap(), "a");
    assert!(f.boolean("EnableTagOverride").unwrap());
    let v: Value = serde_json::json!({"Bogus": 1});
    let err = fields(&v, "ServiceDefinition", &["Name"]).unwrap_err();
    assert_eq!(err, "json: unknown field \"Bogus\"");
}
