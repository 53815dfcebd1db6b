use super::*;

const OWNER: &str = "_grpc_config.echo.test.";

/// A TXT record of `text` cut into character-strings of at most 255 bytes, as a
/// zone holds a long record (and as grpc-go's tests build theirs).
fn record(text: &str) -> TXT {
    let strings = text
        .as_bytes()
        .chunks(255)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    TXT::new(strings)
}

fn client() -> Client {
    Client::new("host-a", 50)
}

fn pick(client: &Client, records: &[TXT]) -> Result<Option<String>> {
    select(OWNER, records, client)
}

fn pick_one(client: &Client, text: &str) -> Option<String> {
    pick(client, &[record(text)]).expect(text)
}

/// grpc-go's `txtRecordGood`: a choice for other languages, one for 0 %, one for
/// another host, one for Go only, then one for every client.
const CHOICES: &str = r#"grpc_config=[
  {"clientLanguage": ["CPP", "JAVA"],
   "serviceConfig": {"loadBalancingPolicy": "grpclb", "methodConfig": [{"name": [{"service": "all"}], "timeout": "1s"}]}},
  {"percentage": 0,
   "serviceConfig": {"loadBalancingPolicy": "grpclb", "methodConfig": [{"name": [{"service": "all"}], "timeout": "1s"}]}},
  {"clientHostName": ["localhost"],
   "serviceConfig": {"loadBalancingPolicy": "grpclb", "methodConfig": [{"name": [{"service": "all"}], "timeout": "1s"}]}},
  {"clientLanguage": ["GO"], "percentage": 100,
   "serviceConfig": {"loadBalancingPolicy": "round_robin", "methodConfig": [{"name": [{"service": "foo"}], "waitForReady": true, "timeout": "1s"}]}},
  {"serviceConfig": {"loadBalancingPolicy": "round_robin", "methodConfig": [{"name": [{"service": "foo", "method": "bar"}], "waitForReady": true}]}}
]"#;

#[test]
fn picks_the_first_choice_that_applies_and_reserializes_it() {
    assert!(CHOICES.len() > 255, "the record spans several strings");
    let want = r#"{"loadBalancingPolicy":"round_robin","methodConfig":[{"name":[{"method":"bar","service":"foo"}],"waitForReady":true}]}"#;
    assert_eq!(pick_one(&client(), CHOICES).as_deref(), Some(want));
    // The Go-only choice, listed for Rust too (case-insensitively), comes first.
    let rust = CHOICES.replace(r#"["GO"]"#, r#"["go", "RuSt"]"#);
    let got = pick_one(&client(), &rust).unwrap();
    assert!(got.contains(r#""timeout":"1s""#), "{got}");
}

#[test]
fn nothing_applies_means_no_document() {
    // grpc-go's `txtRecordNonMatching`: the first three choices only.
    let end = CHOICES.find(r#"  {"clientLanguage": ["GO"]"#).unwrap();
    let first_three = format!("{}]", CHOICES[..end].trim_end().trim_end_matches(','));
    assert_eq!(pick_one(&client(), &first_three), None);
    assert_eq!(pick_one(&client(), "grpc_config=[]"), None);
}

#[test]
fn only_grpc_config_records_count() {
    let config = r#"grpc_config=[{"serviceConfig":{"loadBalancingPolicy":"pick_first"}}]"#;
    let others = [
        record("v=spf1 -all"),
        record(&format!("x{config}")),
        record(&config.to_uppercase()),
        TXT::from_bytes(vec![b"\xff\xfe not UTF-8"]),
    ];
    assert_eq!(pick(&client(), &others).unwrap(), None);
    let mut all = others.to_vec();
    all.insert(2, record(config));
    let got = pick(&client(), &all).unwrap();
    assert_eq!(
        got.as_deref(),
        Some(r#"{"loadBalancingPolicy":"pick_first"}"#)
    );
    assert_eq!(pick(&client(), &[]).unwrap(), None);
}

#[test]
fn a_record_is_its_strings_joined() {
    let strings = ["grpc_config=[{\"service", "Config\":{}}", "]"];
    let txt = TXT::new(strings.map(str::to_owned).to_vec());
    assert_eq!(pick(&client(), &[txt]).unwrap().as_deref(), Some("{}"));
}

#[test]
fn percentage_compares_with_the_draw() {
    let text = |p: u8| format!(r#"grpc_config=[{{"percentage":{p},"serviceConfig":{{}}}}]"#);
    for draw in [0, 1, 49, 50, 98, 99] {
        let client = Client::new("h", draw);
        assert_eq!(pick_one(&client, &text(0)), None, "0 % never applies");
        assert!(pick_one(&client, &text(100)).is_some(), "100 % always does");
        let half = pick_one(&client, &text(50)).is_some();
        assert_eq!(half, draw < 50, "draw {draw}");
    }
}

#[test]
fn language_and_hostname_lists() {
    let text = |field: &str, list: &str| {
        format!(r#"grpc_config=[{{"{field}":{list},"serviceConfig":{{}}}}]"#)
    };
    let cases = [
        ("clientLanguage", r#"["rust"]"#, true),
        ("clientLanguage", r#"["C++", "RUST"]"#, true),
        ("clientLanguage", r#"["go", "java"]"#, false),
        // gRFC A2: an empty list matches every client (grpc-go matches none).
        ("clientLanguage", "[]", true),
        ("clientHostname", r#"["host-b", "host-a"]"#, true),
        ("clientHostname", r#"["HOST-A"]"#, false),
        ("clientHostName", r#"["host-a"]"#, true),
        ("clientHostname", "[]", true),
    ];
    for (field, list, applies) in cases {
        let got = pick_one(&client(), &text(field, list));
        assert_eq!(got.is_some(), applies, "{field}: {list}");
    }
}

#[test]
fn unknown_fields_are_ignored() {
    let text = r#"grpc_config=[{"clientZone":["z"],"serviceConfig":{"a":1}}]"#;
    assert_eq!(pick_one(&client(), text).as_deref(), Some(r#"{"a":1}"#));
}

#[test]
fn a_malformed_record_is_a_decode_error() {
    let bad = [
        "grpc_config=",
        "grpc_config=not json",
        r#"grpc_config={"serviceConfig":{}}"#,
        "grpc_config=[1]",
        r#"grpc_config=[{"clientLanguage":"rust","serviceConfig":{}}]"#,
        r#"grpc_config=[{"percentage":"50","serviceConfig":{}}]"#,
        r#"grpc_config=[{"percentage":50.5,"serviceConfig":{}}]"#,
        r#"grpc_config=[{"percentage":-1,"serviceConfig":{}}]"#,
        r#"grpc_config=[{"percentage":101,"serviceConfig":{}}]"#,
        r#"grpc_config=[{"clientLanguage":["go"]}]"#,
        // Even after a choice that applies: the whole document is refused (A2).
        r#"grpc_config=[{"serviceConfig":{}},{"serviceConfig":[]}]"#,
    ];
    for text in bad {
        let err = pick(&client(), &[record(text)]).expect_err(text);
        assert!(err.is_decode() && err.to_string().contains(OWNER), "{err}");
    }
    let not_utf8 = TXT::from_bytes(vec![b"grpc_config=[\xff]"]);
    assert!(pick(&client(), &[not_utf8]).unwrap_err().is_decode());
    let two = [record("grpc_config=[]"), record("grpc_config=[]")];
    let err = pick(&client(), &two).unwrap_err();
    assert!(err.to_string().contains("more than one"), "{err}");
}

#[test]
fn this_host_draws_below_100() {
    for _ in 0..100 {
        assert!(Client::this_host().draw < 100);
    }
}
