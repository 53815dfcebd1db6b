use super::parse::{self, Parts};
use super::*;

fn err(uri: &str) -> String {
    match Target::parse(uri) {
        Ok(t) => panic!("`{uri}` parsed as {t:?}"),
        Err(e) => {
            assert!(e.is_config(), "{e}");
            e.to_string()
        }
    }
}

#[test]
fn splits_the_parts() {
    let p = parse::split("consul://h:1/echo?tag=a").unwrap();
    assert_eq!(
        p,
        Parts {
            scheme: "consul",
            authority: Some("h:1"),
            path: "echo",
            query: Some("tag=a"),
        }
    );
    let p = parse::split("dns:///h:1").unwrap();
    assert_eq!((p.authority, p.path, p.query), (Some(""), "h:1", None));
    let p = parse::split("dns:h:1").unwrap();
    assert_eq!((p.authority, p.path), (None, "h:1"));
    assert!(parse::split("no-scheme").is_err());
    assert!(parse::split(":x").is_err());
    assert!(parse::split("consul://h:1/echo#frag").is_err());
    assert!(parse::split("consul://user:pw@h:1/echo").is_err());
}

#[test]
fn decodes_percent_and_plus() {
    assert_eq!(parse::decode("a%20b+c", true).unwrap(), "a b c");
    assert_eq!(parse::decode("a+b%2B", false).unwrap(), "a+b+");
    assert_eq!(parse::decode("%e2%9c%93", false).unwrap(), "✓");
    assert!(parse::decode("%", true).is_err());
    assert!(parse::decode("%zz", true).is_err());
    assert!(parse::decode("%ff", true).is_err(), "not UTF-8");
    let pairs = parse::query_pairs(Some("k=v%3D1&&flag&x=")).unwrap();
    assert_eq!(
        pairs,
        [
            ("k".to_owned(), "v=1".to_owned()),
            ("flag".to_owned(), String::new()),
            ("x".to_owned(), String::new()),
        ]
    );
}

#[test]
fn checks_hosts_and_ports() {
    for good in [
        "127.0.0.1:1",
        "[::1]:65535",
        "consul.service.dc1:8500",
        "a-b.c_d:9",
    ] {
        parse::host_port("t", good).unwrap();
    }
    for (bad, named) in [
        ("h", "no port"),
        ("h:0", "`0`"),
        ("h:65536", "`65536`"),
        ("h:x", "`x`"),
        ("[::g]:1", "`[::g]`"),
        ("-h:1", "`-h`"),
        ("a..b:1", "`a..b`"),
        (":1", "``"),
    ] {
        let e = parse::host_port("t", bad).unwrap_err().to_string();
        assert!(e.contains(named), "{bad}: {e}");
    }
}

#[test]
fn refuses_unknown_schemes() {
    let e = err("zookeeper://h:2181/echo");
    assert!(e.contains("unknown scheme `zookeeper`"), "{e}");
    assert!(err("echo").contains("no scheme"));
}

#[test]
fn parses_static_lists() {
    for uri in [
        "static:///127.0.0.1:1,[::1]:2",
        "static://127.0.0.1:1,[::1]:2",
    ] {
        let t = Target::parse(uri).unwrap();
        assert_eq!(t.scheme(), Scheme::Static);
        assert_eq!(
            t.spec,
            Spec::Static {
                addrs: vec!["127.0.0.1:1".into(), "[::1]:2".into()]
            }
        );
        assert_eq!(t.service(), None);
        assert!(!t.needs_service());
        assert_eq!(t.name(), "static");
        assert_eq!(t.to_string(), uri);
    }
    assert_eq!(
        Target::parse("static:///h:1")
            .unwrap()
            .with_service("echo")
            .name(),
        "echo"
    );
    assert!(err("static:///").contains("at least one"));
    assert!(err("static:///h:1,").contains("``"));
    assert!(err("static:///h").contains("`h` has no port"));
    assert!(err("static:///h:1?x=1").contains("unknown query key `x`"));
    assert!(err("static://a:1/b:2").contains("both an authority"));
}

#[cfg(feature = "consul")]
#[test]
fn parses_consul_targets() {
    let t: Target = "consul://127.0.0.1:8500/echo?tag=blue&tag=v%202&dc=eu1&near=_agent\
                     &filter=Service.Meta.zone+%3D%3D+%22a%22&passing=false"
        .parse()
        .unwrap();
    assert_eq!(t.scheme(), Scheme::Consul);
    assert_eq!(t.service(), Some("echo"));
    assert!(t.needs_service());
    assert_eq!(
        t.spec,
        Spec::Consul(ConsulSpec {
            address: Some("127.0.0.1:8500".into()),
            tags: vec!["blue".into(), "v 2".into()],
            dc: Some("eu1".into()),
            near: Some("_agent".into()),
            filter: Some("Service.Meta.zone == \"a\"".into()),
            passing: false,
        })
    );
    let t = Target::parse("consul:///echo").unwrap();
    assert!(matches!(&t.spec, Spec::Consul(s) if s.address.is_none() && s.passing));
    let t = Target::parse("consul://h:8500").unwrap();
    assert_eq!(t.service(), None);
    assert_eq!(t.clone().with_service("x").service(), Some("x"));
    assert!(t.consul_client().is_ok());

    assert!(err("consul://h:8500/echo?wait=5s").contains("unknown query key `wait`"));
    assert!(err("consul://h:8500/echo?passing=yes").contains("`yes`"));
    assert!(err("consul://h/echo").contains("`h` has no port"));
    assert!(err("consul://h:99999/echo").contains("`99999`"));
    assert!(err("consul://h:1/a/b").contains("more than one service"));
}

#[cfg(feature = "consul")]
#[tokio::test]
async fn a_registry_target_needs_a_service_to_discover() {
    let t = Target::parse("consul://127.0.0.1:8500").unwrap();
    let e = t.discovery().await.unwrap_err();
    assert!(
        e.is_config() && e.to_string().contains("names no service"),
        "{e}"
    );
    assert!(t.with_service("echo").discovery().await.is_ok());
}

#[cfg(not(feature = "consul"))]
#[test]
fn consul_needs_its_feature() {
    assert!(err("consul://h:8500/echo").contains("`consul` feature"));
}

#[cfg(feature = "etcd")]
#[test]
fn parses_etcd_targets() {
    let t = Target::parse("etcd://10.0.0.1:2379,10.0.0.2:2379/echo").unwrap();
    assert_eq!(t.scheme(), Scheme::Etcd);
    assert_eq!(t.service(), Some("echo"));
    assert_eq!(
        t.spec,
        Spec::Etcd {
            endpoints: vec!["10.0.0.1:2379".into(), "10.0.0.2:2379".into()]
        }
    );
    assert_eq!(Target::parse("etcd://h:2379").unwrap().service(), None);
    assert!(err("etcd:///echo").contains("at least one"));
    assert!(err("etcd://h:2379/echo?prefix=x").contains("unknown query key `prefix`"));
    assert!(err("etcd://h:2379,h/echo").contains("`h` has no port"));
}

#[cfg(not(feature = "etcd"))]
#[test]
fn etcd_needs_its_feature() {
    assert!(err("etcd://h:2379/echo").contains("`etcd` feature"));
}

#[cfg(feature = "nacos")]
#[test]
fn parses_nacos_targets() {
    let t = Target::parse("nacos://h:8848/echo?namespace=dev&group=G%201&cluster=a").unwrap();
    assert_eq!(t.scheme(), Scheme::Nacos);
    assert_eq!(t.service(), Some("echo"));
    assert_eq!(
        t.spec,
        Spec::Nacos(NacosSpec {
            servers: vec!["h:8848".into()],
            namespace: Some("dev".into()),
            group: Some("G 1".into()),
            cluster: Some("a".into()),
        })
    );
    assert!(err("nacos://h:8848/echo?tag=a").contains("unknown query key `tag`"));
    assert!(err("nacos:///echo").contains("at least one"));
}

#[cfg(not(feature = "nacos"))]
#[test]
fn nacos_needs_its_feature() {
    assert!(err("nacos://h:8848/echo").contains("`nacos` feature"));
}

#[cfg(feature = "dns")]
#[test]
fn parses_dns_targets() {
    for uri in [
        "dns:///echo.example.com:50051",
        "dns:echo.example.com:50051",
    ] {
        let t = Target::parse(uri).unwrap();
        assert_eq!(t.scheme(), Scheme::Dns);
        assert_eq!(
            t.spec,
            Spec::Dns {
                nameserver: None,
                host: "echo.example.com:50051".into()
            }
        );
        assert_eq!(t.name(), "echo.example.com:50051");
        assert!(!t.needs_service());
    }
    let t = Target::parse("dns+srv://127.0.0.1:5353/_grpc._tcp.example.com").unwrap();
    assert_eq!(
        t.spec,
        Spec::DnsSrv {
            nameserver: Some("127.0.0.1:5353".parse().unwrap()),
            name: "_grpc._tcp.example.com".into()
        }
    );
    assert!(err("dns://echo:50051").contains("nameserver `echo:50051`"));
    assert!(err("dns:///echo").contains("`echo` has no port"));
    assert!(err("dns:///").contains("no name"));
    assert!(err("dns+srv:///bad name").contains("`bad name`"));
    assert!(err("dns:///h:1?x=1").contains("unknown query key `x`"));
}

#[cfg(not(feature = "dns"))]
#[test]
fn dns_needs_its_feature() {
    assert!(err("dns:///h:1").contains("`dns` feature"));
    assert!(err("dns+srv:///_grpc._tcp.x").contains("`dns` feature"));
}
