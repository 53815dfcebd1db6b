use std::collections::BTreeMap;

use super::*;

#[test]
fn service_names() {
    let long = "a".repeat(63);
    for ok in ["echo", "echo-v2", "E2", "a", long.as_str()] {
        assert!(service_name(ok).is_ok(), "{ok} should be accepted");
    }
    let too_long = "a".repeat(64);
    for bad in [
        "",
        "-echo",
        "echo-",
        "echo.v1",
        "echo v1",
        "écho",
        too_long.as_str(),
    ] {
        let e = service_name(bad).expect_err(bad);
        assert!(e.is_config(), "{bad}: {e}");
    }
}

#[test]
fn underscore_error_says_why_and_suggests_dashes() {
    let e = service_name("user_service").unwrap_err().to_string();
    assert!(e.contains("underscore"), "{e}");
    assert!(e.contains("DNS"), "{e}");
    assert!(e.contains("`user-service`"), "{e}");
    assert!(e.contains(NAME_RULE), "{e}");
    assert!(e.contains("allow_non_dns_name(true)"), "{e}");
}

#[test]
fn dot_error_suggests_dashes_and_the_opt_in() {
    let e = service_name("_billing.v1").unwrap_err().to_string();
    assert!(e.contains("a dot") || e.contains("an underscore"), "{e}");
    assert!(e.contains("`billing-v1`"), "{e}");
    assert!(e.contains("allow_non_dns_name(true)"), "{e}");
}

#[test]
fn every_name_refusal_names_the_rule() {
    let too_long = "a".repeat(64);
    for bad in ["", "-echo", "echo-", "echo v1", "écho", too_long.as_str()] {
        let e = service_name(bad).unwrap_err().to_string();
        assert!(e.contains(NAME_RULE), "{bad:?}: {e}");
    }
    for bad in ["", "echo v1", "echo/v1", too_long.as_str()] {
        let e = non_dns_service_name(bad).unwrap_err().to_string();
        assert!(e.contains(NON_DNS_NAME_RULE), "{bad:?}: {e}");
    }
}

#[test]
fn the_opt_in_takes_underscores_and_dots_and_nothing_else() {
    let longest = "a_".repeat(31) + "b";
    for ok in [
        "user_service",
        "billing.v1",
        "a",
        "_x.",
        longest.as_str(),
        "echo",
    ] {
        assert!(non_dns_service_name(ok).is_ok(), "{ok} should be accepted");
        assert_eq!(is_dns_name(ok), service_name(ok).is_ok(), "{ok}");
    }
    assert!(!is_dns_name("user_service"));
    assert!(is_dns_name("user-service"));
    let too_long = "a.".repeat(32);
    for bad in ["", "a/b", "a b", "a:b", "ü", too_long.as_str()] {
        assert!(non_dns_service_name(bad).unwrap_err().is_config(), "{bad}");
    }
}

#[test]
fn every_id_refusal_names_the_rule() {
    for bad in ["", "a/b", "a b", &"a".repeat(129)] {
        let e = instance_id(bad).unwrap_err().to_string();
        assert!(e.contains(ID_RULE), "{bad:?}: {e}");
    }
}

#[test]
fn instance_ids() {
    for ok in ["echo-host-8080", "redis1", "a_b", "svc:1", "x.y"] {
        assert!(instance_id(ok).is_ok(), "{ok} should be accepted");
    }
    let too_long = "a".repeat(129);
    for bad in ["", "a/b", "a b", "a?b", "ü", too_long.as_str()] {
        assert!(instance_id(bad).unwrap_err().is_config(), "{bad}");
    }
}

fn pairs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn metadata_follows_the_shared_rule() {
    let long_key = "k".repeat(128);
    let long_value = "v".repeat(512);
    let accepted = [
        ("redis_version", "4.0"),
        ("zone-a", ""),
        ("preserved.heart.beat.interval", "5000"),
        ("app.kubernetes.io/name", "echo"),
        (long_key.as_str(), long_value.as_str()),
    ];
    for (k, v) in accepted {
        assert!(meta(&pairs(&[(k, v)])).is_ok(), "{k}");
    }
    let too_long_key = "k".repeat(129);
    let too_long_value = "v".repeat(513);
    let refused = [
        ("", "x", "key ``"),
        ("a b", "x", "key `a b`"),
        ("ü", "x", "key `ü`"),
        ("a\tb", "x", "key `a\\tb`"),
        (too_long_key.as_str(), "x", "printable ASCII"),
        ("k", too_long_value.as_str(), "value of `k`"),
        ("k", "secret\n", "value of `k`"),
    ];
    for (k, v, want) in refused {
        let e = meta(&pairs(&[(k, v)])).unwrap_err();
        assert!(e.is_config() && e.to_string().contains(want), "{k:?}: {e}");
        assert!(!e.to_string().contains("secret"), "never the value: {e}");
    }
    let many: BTreeMap<_, _> = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
    assert!(meta(&many).unwrap_err().to_string().contains("65"));
}

/// What we want to test: the one path every registration takes answers each broken
/// rule with the field and the value, in the order name, ID, metadata, address.
#[test]
fn registered_checks_each_field_in_order() {
    let empty = BTreeMap::new();
    let bad_meta = pairs(&[("a b", "x")]);
    let base = Registered {
        name: "echo",
        allow_non_dns_name: false,
        id: None,
        meta: &empty,
        bind: "10.0.0.1:7".parse().unwrap(),
        advertise: None,
    };
    let table = [
        (base, None),
        (
            Registered {
                name: "echo_v1",
                ..base
            },
            Some("`echo-v1`"),
        ),
        (
            Registered {
                name: "echo_v1",
                allow_non_dns_name: true,
                ..base
            },
            None,
        ),
        (
            Registered {
                id: Some("a/b"),
                ..base
            },
            Some("instance ID `a/b`"),
        ),
        (
            Registered {
                meta: &bad_meta,
                ..base
            },
            Some("key `a b`"),
        ),
        (
            Registered {
                bind: "10.0.0.1:0".parse().unwrap(),
                ..base
            },
            Some("port 0"),
        ),
        (
            Registered {
                advertise: Some("::".parse().unwrap()),
                ..base
            },
            Some("wildcard address ::"),
        ),
        (
            Registered {
                bind: "0.0.0.0:7".parse().unwrap(),
                ..base
            },
            None,
        ),
        (
            Registered {
                name: "",
                id: Some("a/b"),
                ..base
            },
            Some("service name is empty"),
        ),
    ];
    for (registered, want) in table {
        match (registered.check(), want) {
            (Ok(()), None) => {}
            (Err(e), Some(want)) => assert!(e.to_string().contains(want), "{e}"),
            (got, want) => panic!("{registered:?}: {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn name_takes_the_opt_in() {
    let table = [
        ("echo-v2", false, true),
        ("echo_v2", false, false),
        ("echo.v2", false, false),
        ("echo_v2", true, true),
        ("echo.v2", true, true),
        ("echo/v2", true, false),
        ("", true, false),
    ];
    for (n, allow, ok) in table {
        assert_eq!(name(n, allow).is_ok(), ok, "{n} (opt-in {allow})");
    }
}

#[test]
fn sanitizes_hostnames() {
    assert_eq!(sanitize_label("web-1.example.com"), "web-1-example-com");
    assert_eq!(sanitize_label("__my host__"), "my-host");
    assert_eq!(sanitize_label("..."), "host");
    assert_eq!(sanitize_label("ünï"), "n");
}
