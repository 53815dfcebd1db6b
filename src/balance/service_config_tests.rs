use super::*;

/// gRPC's own example of a service config (the retry design, gRFC A6), with fields
/// this crate does not act on.
const A6_EXAMPLE: &str = r#"{
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [
    {
      "name": [{"service": "echo.v1.Echo", "method": "Echo"}],
      "waitForReady": true,
      "timeout": "1.5s",
      "retryPolicy": {
        "maxAttempts": 4,
        "initialBackoff": "0.1s",
        "maxBackoff": "1s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE", 8]
      }
    },
    {
      "name": [{"service": "echo.v1.Echo"}, {"service": "other.Svc", "method": "Get"}],
      "timeout": "0.000000001s"
    },
    {"name": [{}], "timeout": "30s"}
  ],
  "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}
}"#;

#[test]
fn grpcs_json_reads_as_the_same_config_built_in_code() {
    let parsed = ServiceConfig::from_json(A6_EXAMPLE).expect("a valid document");
    let built = ServiceConfig::new()
        .method(
            MethodConfig::new([MethodName::method("echo.v1.Echo", "Echo")])
                .timeout(Duration::from_millis(1500))
                .retry(
                    RetryPolicy::new(4, [Code::Unavailable, Code::ResourceExhausted]).backoff(
                        Duration::from_millis(100),
                        Duration::from_secs(1),
                        2.0,
                    ),
                ),
        )
        .method(
            MethodConfig::new([
                MethodName::service("echo.v1.Echo"),
                MethodName::method("other.Svc", "Get"),
            ])
            .timeout(Duration::from_nanos(1)),
        )
        .method(MethodConfig::new([MethodName::all()]).timeout(Duration::from_secs(30)))
        .retry_throttling(RetryThrottling::new(10, 0.1));
    assert_eq!(parsed, built);
    built.validate().expect("the built config is valid too");
}

#[test]
fn the_most_specific_name_wins() {
    let config = ServiceConfig::from_json(A6_EXAMPLE).expect("valid");
    let methods = config.methods().expect("some methods");
    let timeout = |path: &str| methods.lookup(path).and_then(|m| m.timeout);
    assert_eq!(
        timeout("/echo.v1.Echo/Echo"),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        timeout("/echo.v1.Echo/EchoStream"),
        Some(Duration::from_nanos(1))
    );
    assert_eq!(timeout("/other.Svc/Get"), Some(Duration::from_nanos(1)));
    assert_eq!(timeout("/other.Svc/Put"), Some(Duration::from_secs(30)));
    assert_eq!(timeout("/"), Some(Duration::from_secs(30)));
    assert!(methods.any_retry());

    let no_default = ServiceConfig::new()
        .method(MethodConfig::new([MethodName::service("a.A")]).timeout(Duration::from_secs(1)));
    let methods = no_default.methods().expect("some methods");
    assert!(methods.lookup("/a.A/X").is_some());
    assert!(methods.lookup("/b.B/X").is_none(), "no default config");
    assert!(!methods.any_retry());
    assert!(ServiceConfig::new().methods().is_none());
}

#[test]
fn more_than_five_attempts_count_as_five() {
    let config = ServiceConfig::new().method(
        MethodConfig::new([MethodName::all()]).retry(RetryPolicy::new(9, [Code::Unavailable])),
    );
    config.validate().expect("valid: capped, not refused");
    let methods = config.methods().expect("methods");
    let retry = methods
        .lookup("/a.A/B")
        .and_then(|m| m.retry)
        .expect("a policy");
    assert_eq!(retry.max_attempts, MAX_ATTEMPTS);
}

#[test]
fn backoff_grows_by_the_multiplier_up_to_the_max() {
    let policy = RetryPolicy::new(5, [Code::Unavailable]).backoff(
        Duration::from_millis(100),
        Duration::from_millis(500),
        2.0,
    );
    let bounds: Vec<_> = (0..5)
        .map(|n| policy.backoff_bound(n).as_millis())
        .collect();
    assert_eq!(bounds, [100, 200, 400, 500, 500]);
    let steep = policy.backoff(Duration::from_secs(1), Duration::from_secs(2), 1e300);
    assert_eq!(
        steep.backoff_bound(u32::MAX),
        Duration::from_secs(2),
        "no overflow"
    );
}

fn error(json: &str) -> String {
    ServiceConfig::from_json(json)
        .expect_err("an invalid document")
        .to_string()
}

fn retry_doc(fields: &str) -> String {
    format!(r#"{{"methodConfig": [{{"name": [{{}}], "retryPolicy": {{{fields}}}}}]}}"#)
}

const GOOD: &str = r#""maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]"#;

#[test]
fn bad_documents_are_refused_naming_the_field() {
    let _valid = ServiceConfig::from_json(&retry_doc(GOOD)).expect("the base document is valid");
    let cases = [
        (
            retry_doc(&GOOD.replace(r#""maxAttempts": 3"#, r#""maxAttempts": 1"#)),
            "methodConfig[0].retryPolicy.maxAttempts: 1 (must be at least 2)",
        ),
        (
            retry_doc(&GOOD.replace(r#""0.1s""#, r#""100ms""#)),
            "methodConfig[0].retryPolicy.initialBackoff: `100ms` is not a duration",
        ),
        (
            retry_doc(&GOOD.replace(r#""1s""#, r#""0s""#)),
            "methodConfig[0].retryPolicy.maxBackoff: must be positive",
        ),
        (
            retry_doc(&GOOD.replace(r#""backoffMultiplier": 2"#, r#""backoffMultiplier": 0"#)),
            "methodConfig[0].retryPolicy.backoffMultiplier: 0 (must be positive)",
        ),
        (
            retry_doc(&GOOD.replace("UNAVAILABLE", "UNAVAILABL")),
            r#"methodConfig[0].retryPolicy.retryableStatusCodes[0]: "UNAVAILABL" is not a gRPC status code"#,
        ),
        (
            retry_doc(&GOOD.replace(r#"["UNAVAILABLE"]"#, "[17]")),
            "retryableStatusCodes[0]: 17 is not a gRPC status code",
        ),
        (
            retry_doc(&GOOD.replace(r#"["UNAVAILABLE"]"#, "[]")),
            "methodConfig[0].retryPolicy.retryableStatusCodes: must name at least one code",
        ),
        (
            retry_doc(&GOOD.replace(r#""maxBackoff": "1s", "#, "")),
            "methodConfig[0].retryPolicy.maxBackoff: missing",
        ),
        (
            r#"{"methodConfig": [{"name": [{"service": "a.A"}]}, {"name": [{"method": "M"}]}]}"#
                .into(),
            "methodConfig[1].name[0]: method `M` without its service",
        ),
        (
            r#"{"methodConfig": [{"name": [{"service": "a.A"}]}, {"name": [{"service": "b.B"}, {"service": "a.A"}]}]}"#
                .into(),
            "methodConfig[1].name[1]: service `a.A` is already configured by methodConfig[0]",
        ),
        (
            r#"{"methodConfig": [{"name": [{}]}, {"name": [{"service": ""}]}]}"#.into(),
            "the default method config is already configured",
        ),
        (
            r#"{"methodConfig": [{"name": [{}], "timeout": "-1s"}]}"#.into(),
            "methodConfig[0].timeout: `-1s` is not a duration",
        ),
        (
            format!(
                r#"{{"methodConfig": [{{"name": [{{}}], "retryPolicy": {{{GOOD}}}, "hedgingPolicy": {{"maxAttempts": 2}}}}]}}"#
            ),
            "methodConfig[0]: retryPolicy and hedgingPolicy exclude each other",
        ),
        (
            r#"{"methodConfig": [{"name": [{}], "hedgingPolicy": {"maxAttempts": 1}}]}"#.into(),
            "methodConfig[0].hedgingPolicy.maxAttempts: 1 (must be at least 2)",
        ),
        (
            r#"{"methodConfig": [{"name": [{}], "hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "fast"}}]}"#.into(),
            "methodConfig[0].hedgingPolicy.hedgingDelay: `fast` is not a duration",
        ),
        (
            r#"{"methodConfig": [{"name": [{}], "hedgingPolicy": {"maxAttempts": 2, "nonFatalStatusCodes": ["NOPE"]}}]}"#.into(),
            r#"methodConfig[0].hedgingPolicy.nonFatalStatusCodes[0]: "NOPE" is not a gRPC status code"#,
        ),
        (
            r#"{"retryThrottling": {"maxTokens": 0, "tokenRatio": 0.1}}"#.into(),
            "retryThrottling.maxTokens: 0 (must be above 0 and at most 1000)",
        ),
        (
            r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 0}}"#.into(),
            "retryThrottling.tokenRatio: 0 (must be at least 0.001)",
        ),
        (
            r#"{"retryThrottling": {"maxTokens": 10}}"#.into(),
            "retryThrottling.tokenRatio: missing",
        ),
        (r#"{"methodConfig": {}}"#.into(), "service config: invalid type"),
        ("not json".into(), "service config: expected"),
    ];
    for (doc, want) in cases {
        let got = error(&doc);
        assert!(got.contains(want), "{doc}\n  gave: {got}\n  want: {want}");
    }
}

#[test]
fn a_config_built_in_code_is_checked_by_the_same_rules() {
    let bad = ServiceConfig::new()
        .method(MethodConfig::new([MethodName::all()]).retry(RetryPolicy::new(3, [])));
    let err = bad.validate().expect_err("no retryable codes").to_string();
    assert!(
        err.contains("methodConfig[0].retryPolicy.retryableStatusCodes"),
        "{err}"
    );
    let nameless = ServiceConfig::new().method(MethodConfig::new([]));
    let err = nameless.validate().expect_err("no names").to_string();
    assert!(
        err.contains("methodConfig[0].name: names no method"),
        "{err}"
    );
}

#[test]
fn durations_read_as_protobuf_writes_them() {
    let ok = |s: &str| json::duration(s, "f").expect(s);
    assert_eq!(ok("1s"), Duration::from_secs(1));
    assert_eq!(ok("0.25s"), Duration::from_millis(250));
    assert_eq!(ok("1.000000001s"), Duration::new(1, 1));
    assert_eq!(ok("0s"), Duration::ZERO);
    for bad in [
        "1",
        "s",
        ".5s",
        "1.s",
        "-1s",
        "1.0000000001s",
        "1 s",
        "0x10s",
        "",
    ] {
        assert!(json::duration(bad, "f").is_err(), "{bad:?} accepted");
    }
}

#[test]
fn a_hedging_policy_reads_as_built_in_code() {
    let parsed = ServiceConfig::from_json(
        r#"{"methodConfig": [{
            "name": [{"service": "echo.v1.Echo"}],
            "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0.05s", "nonFatalStatusCodes": ["UNAVAILABLE", "UNKNOWN"]}
        }, {
            "name": [{"service": "other.Svc"}],
            "hedgingPolicy": {"maxAttempts": 7}
        }]}"#,
    )
    .expect("valid");
    let built = ServiceConfig::new()
        .method(
            MethodConfig::new([MethodName::service("echo.v1.Echo")]).hedge(HedgingPolicy::new(
                3,
                Duration::from_millis(50),
                [Code::Unavailable, Code::Unknown],
            )),
        )
        .method(
            MethodConfig::new([MethodName::service("other.Svc")]).hedge(HedgingPolicy::new(
                7,
                Duration::ZERO,
                [],
            )),
        );
    assert_eq!(parsed, built);
    let methods = parsed.methods().expect("methods");
    let other = methods
        .lookup("/other.Svc/X")
        .and_then(|m| m.hedge)
        .expect("hedged");
    assert_eq!(
        other.max_attempts, MAX_ATTEMPTS,
        "more than five count as five"
    );
    assert!(
        methods
            .lookup("/other.Svc/X")
            .is_some_and(|m| m.latency.is_none())
    );
    assert!(
        !methods.any_retry(),
        "hedging keeps its own copy of the request"
    );
}

#[test]
fn an_adaptive_delay_is_checked_and_gets_a_latency_window() {
    let adaptive = |p: f64, floor: u64, cap: u64| {
        ServiceConfig::new().method(MethodConfig::new([MethodName::all()]).hedge(
            HedgingPolicy::new(2, Duration::ZERO, []).adaptive_delay(
                p,
                Duration::from_millis(floor),
                Duration::from_millis(cap),
            ),
        ))
    };
    let good = adaptive(95.0, 1, 100);
    good.validate().expect("valid");
    let methods = good.methods().expect("methods");
    assert!(
        methods
            .lookup("/a.A/B")
            .is_some_and(|m| m.latency.is_some())
    );
    for (bad, want) in [
        (adaptive(100.0, 1, 100), "percentile 100"),
        (adaptive(0.0, 1, 100), "percentile 0"),
        (
            adaptive(95.0, 200, 100),
            "the cap must be positive and at least the floor",
        ),
        (adaptive(95.0, 0, 0), "the cap must be positive"),
    ] {
        let err = bad.validate().expect_err(want).to_string();
        assert!(
            err.contains("methodConfig[0].hedgingPolicy.hedgingDelay") && err.contains(want),
            "{err}"
        );
    }
}
