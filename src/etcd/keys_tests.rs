use super::*;
use proptest::prelude::*;

fn published(host: &str) -> Published {
    Published {
        service: "echo".to_owned(),
        id: "echo-1".to_owned(),
        host: host.to_owned(),
        port: 50051,
        meta: BTreeMap::from([("zone".to_owned(), "a".to_owned())]),
        version: "v1".to_owned(),
    }
}

#[test]
fn endpoints_layout_matches_go_naming() {
    let p = published("10.0.0.1");
    let layout = KeyLayout::Endpoints;
    assert_eq!(layout.key(&p), "echo/10.0.0.1:50051");
    assert_eq!(
        String::from_utf8(layout.encode(&p)).unwrap(),
        r#"{"Op":0,"Addr":"10.0.0.1:50051","Metadata":{"zone":"a"}}"#
    );
    let i = layout
        .decode("echo", "echo/10.0.0.1:50051", &layout.encode(&p))
        .unwrap();
    assert_eq!(
        (i.host(), i.port(), i.id()),
        ("10.0.0.1", 50051, "echo/10.0.0.1:50051")
    );
    assert_eq!(i.meta()["zone"], "a");
}

#[test]
fn decodes_values_written_by_go_and_etcdctl() {
    let l = KeyLayout::Endpoints;
    let i = l
        .decode("s", "s/x", br#"{"Op":0,"Addr":"[::1]:7","Metadata":null}"#)
        .unwrap();
    assert_eq!((i.host(), i.port()), ("::1", 7));
    assert!(i.meta().is_empty());
    let i = l
        .decode("s", "s/x", br#"{"Addr":"h:1","Metadata":"blob"}"#)
        .unwrap();
    assert_eq!(i.meta()["Metadata"], "blob");
    let i = l
        .decode("s", "s/x", br#"{"Addr":"h:1","Metadata":{"w":3}}"#)
        .unwrap();
    assert_eq!(i.meta()["w"], "3");
}

#[test]
fn rejects_what_is_not_an_endpoint() {
    let l = KeyLayout::Endpoints;
    for bad in [
        &br#"{"Op":1,"Addr":"h:1"}"#[..],
        br#"{"Addr":"1.2.3.4"}"#,
        br#"{"Addr":":1"}"#,
        br#"{"Addr":"h:0"}"#,
        br#"{"Addr":"h:70000"}"#,
        b"10.0.0.7:8080",
        b"",
        b"\xff\xfe",
    ] {
        let e = l.decode("s", "s/x", bad).unwrap_err();
        assert!(e.is_decode(), "{e}");
        assert!(e.to_string().contains("s/x"), "{e}");
    }
}

#[test]
fn kratos_layout_round_trips_and_reads_kratos_values() {
    let p = published("10.0.0.5");
    let l = KeyLayout::Kratos;
    assert_eq!(l.key(&p), "/microservices/echo/echo-1");
    let i = l
        .decode("echo", "/microservices/echo/echo-1", &l.encode(&p))
        .unwrap();
    assert_eq!((i.host(), i.port()), ("10.0.0.5", 50051));
    let go = br#"{"id":"6c8f","name":"helloworld","version":"v1.0.0","metadata":{"region":"eu"},"endpoints":["http://10.0.0.5:8000","grpc://10.0.0.5:9000?isSecure=false"]}"#;
    let i = l
        .decode("helloworld", "/microservices/helloworld/6c8f", go)
        .unwrap();
    assert_eq!((i.host(), i.port()), ("10.0.0.5", 9000));
    assert_eq!(i.meta()["region"], "eu");
    assert!(l.decode("other", "k", go).unwrap_err().is_decode());
    let http_only = br#"{"name":"s","endpoints":["http://h:1"]}"#;
    assert!(l.decode("s", "k", http_only).unwrap_err().is_decode());
}

#[test]
fn the_weight_comes_from_metadata() {
    let l = KeyLayout::Kratos;
    let value = |w: &str| {
        format!(
            r#"{{"name":"s","metadata":{{"weight":"{w}","zone":"a"}},"endpoints":["grpc://h:1"]}}"#
        )
    };
    for (w, want) in [
        ("4", 4),
        (" 2.6 ", 3),
        ("0", 1),
        ("-3", 1),
        ("x", 1),
        ("1e9", 10_000),
    ] {
        let i = l.decode("s", "k", value(w).as_bytes()).unwrap();
        assert_eq!(i.weight(), want, "weight {w:?}");
        assert_eq!(i.meta()["zone"], "a");
    }
    let e = KeyLayout::Endpoints;
    let i = e
        .decode(
            "s",
            "k",
            br#"{"Op":0,"Addr":"h:1","Metadata":{"weight":7}}"#,
        )
        .unwrap();
    assert_eq!(i.weight(), 7, "{i:?}");
}

#[test]
fn prefixes_end_with_a_slash() {
    assert_eq!(KeyLayout::Endpoints.prefix("a/b"), "a/b/");
    assert_eq!(KeyLayout::Kratos.prefix("a"), "/microservices/a/");
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(value in prop::collection::vec(any::<u8>(), 0..256)) {
        for layout in [KeyLayout::Endpoints, KeyLayout::Kratos] {
            match layout.decode("s", "s/k", &value) {
                Err(e) => prop_assert!(e.is_decode(), "{e:?}"),
                Ok(i) => prop_assert!(i.port() != 0 && !i.host().is_empty(), "{i:?}"),
            }
        }
    }

    #[test]
    fn a_truncated_value_is_a_decode_error(cut in 0usize..40) {
        let endpoint = br#"{"Op":0,"Addr":"10.0.0.1:9000","Metadata":{"zone":"a"}}"#;
        let kratos = br#"{"id":"a","name":"s","endpoints":["grpc://10.0.0.1:9000"]}"#;
        for (layout, value) in [(KeyLayout::Endpoints, &endpoint[..]), (KeyLayout::Kratos, &kratos[..])] {
            prop_assert!(layout.decode("s", "s/k", value).is_ok());
            let cut = cut.min(value.len() - 1);
            let err = layout.decode("s", "s/k", &value[..cut]).unwrap_err();
            prop_assert!(err.is_decode(), "{err:?}");
        }
    }

    #[test]
    fn arbitrary_addresses_never_panic(addr in ".{0,40}") {
        let json = serde_json::json!({ "Addr": addr, "endpoints": [format!("grpc://{addr}")] });
        let bytes = serde_json::to_vec(&json).unwrap();
        let _ = KeyLayout::Endpoints.decode("s", "s/k", &bytes);
        let _ = KeyLayout::Kratos.decode("s", "s/k", &bytes);
    }
}
