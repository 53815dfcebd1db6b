use std::time::Duration;

use serde_json::Value;

use super::*;

const FIXTURE: &str = include_str!("../../tests/fixtures/consul/agent-service-register.json");

/// Every key Consul's `CheckType` decoder accepts (`DisallowUnknownFields` answers 400
/// to any other).
const CHECK_TYPE_FIELDS: &[&str] = &[
    "CheckID",
    "Name",
    "Status",
    "Notes",
    "ScriptArgs",
    "Args",
    "HTTP",
    "H2PING",
    "Header",
    "Method",
    "Body",
    "DisableRedirects",
    "TCP",
    "UDP",
    "Interval",
    "AliasNode",
    "AliasService",
    "DockerContainerID",
    "Shell",
    "GRPC",
    "GRPCUseTLS",
    "OSService",
    "TLSServerName",
    "TLSSkipVerify",
    "Timeout",
    "TTL",
    "SuccessBeforePassing",
    "FailuresBeforeWarning",
    "FailuresBeforeCritical",
    "DeregisterCriticalServiceAfter",
    "OutputMaxSize",
];

fn redis() -> Registration {
    Registration::new("redis", "127.0.0.1:8000".parse().unwrap())
        .id("redis1")
        .tag("primary")
        .tag("v1")
        .meta("redis_version", "4.0")
        .weights(10, 1)
        .deregister_critical_after(Duration::from_secs(90 * 60))
}

#[test]
fn payload_matches_documented_register_body() {
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let resolved = redis().resolve_with("127.0.0.1:8000".parse().unwrap());
    let body: Value = serde_json::from_slice(&resolved.body).unwrap();

    for key in [
        "ID",
        "Name",
        "Tags",
        "Address",
        "Port",
        "Meta",
        "EnableTagOverride",
        "Weights",
    ] {
        assert_eq!(body[key], fixture[key], "field {key}");
    }
    let service_keys = fixture.as_object().unwrap();
    for key in body.as_object().unwrap().keys() {
        assert!(
            service_keys.contains_key(key),
            "{key} is not in the documented payload"
        );
    }
    // The check: same DeregisterCriticalServiceAfter spelling, TTL instead of a script.
    let check = &body["Check"];
    assert_eq!(check["DeregisterCriticalServiceAfter"], "5400s");
    assert_eq!(check["TTL"], "10s");
    assert_eq!(check["CheckID"], "service:redis1");
    for key in check.as_object().unwrap().keys() {
        assert!(
            CHECK_TYPE_FIELDS.contains(&key.as_str()),
            "unknown check field {key}"
        );
    }
    assert_eq!(resolved.check_id, "service:redis1");
    assert_eq!(resolved.interval, Duration::from_secs(10) / 3);
}

#[test]
fn extra_checks_have_explicit_ids() {
    let reg = redis()
        .http_check("http://127.0.0.1:8001/health", Duration::from_secs(5))
        .grpc_check("echo.v1.Echo", Duration::from_millis(1500));
    let resolved = reg.resolve_with("10.0.0.7:8000".parse().unwrap());
    let body: Value = serde_json::from_slice(&resolved.body).unwrap();
    let checks = body["Checks"].as_array().unwrap();
    assert_eq!(checks[0]["CheckID"], "service:redis1:http");
    assert_eq!(checks[0]["HTTP"], "http://127.0.0.1:8001/health");
    assert_eq!(checks[0]["Interval"], "5s");
    assert_eq!(checks[1]["CheckID"], "service:redis1:grpc");
    assert_eq!(checks[1]["GRPC"], "10.0.0.7:8000/echo.v1.Echo");
    assert_eq!(checks[1]["Interval"], "1500ms");
    for check in checks {
        for key in check.as_object().unwrap().keys() {
            assert!(
                CHECK_TYPE_FIELDS.contains(&key.as_str()),
                "unknown check field {key}"
            );
        }
    }
    // The TTL check stays `Check`, so its generated ID would not move either.
    assert_eq!(body["Check"]["CheckID"], "service:redis1");
}

#[test]
fn defaults_id_from_name_host_and_port() {
    let reg = Registration::new("echo", "127.0.0.1:7001".parse().unwrap());
    let resolved = reg.resolve_with("127.0.0.1:7001".parse().unwrap());
    assert!(
        resolved.service_id.starts_with("echo-"),
        "{}",
        resolved.service_id
    );
    assert!(
        resolved.service_id.ends_with("-7001"),
        "{}",
        resolved.service_id
    );
    assert!(validate::instance_id(&resolved.service_id).is_ok());
    let body: Value = serde_json::from_slice(&resolved.body).unwrap();
    assert!(body.get("Weights").is_none());
    assert!(body.get("Locality").is_none());
    assert_eq!(body["Check"]["DeregisterCriticalServiceAfter"], "60s");
}

#[test]
fn locality_is_sent_as_consul_spells_it() {
    let reg = Registration::new("echo", "127.0.0.1:7001".parse().unwrap())
        .id("e1")
        .locality(crate::Locality::new("eu-west-1", "eu-west-1a"));
    let resolved = reg.resolve_with("127.0.0.1:7001".parse().unwrap());
    let body: Value = serde_json::from_slice(&resolved.body).unwrap();
    assert_eq!(
        body["Locality"],
        serde_json::json!({"Region": "eu-west-1", "Zone": "eu-west-1a"})
    );
}

#[test]
fn go_durations() {
    assert_eq!(go_duration(Duration::from_secs(10)), "10s");
    assert_eq!(go_duration(Duration::from_millis(300)), "300ms");
    assert_eq!(go_duration(Duration::from_micros(1)), "1000ns");
}

#[tokio::test]
async fn wildcard_bind_advertises_the_route_towards_the_agent() {
    let reg = Registration::new("echo", "0.0.0.0:7001".parse().unwrap()).id("e1");
    let agent = Url::parse("http://127.0.0.1:8500").unwrap();
    let (resolved, _) = reg.resolve(&agent).await.unwrap();
    assert_eq!(resolved.address, "127.0.0.1:7001".parse().unwrap());

    let reg = Registration::new("echo", "[::]:7001".parse().unwrap())
        .advertise("10.1.2.3".parse().unwrap());
    let (resolved, _) = reg.resolve(&agent).await.unwrap();
    assert_eq!(resolved.address, "10.1.2.3:7001".parse().unwrap());
}
