//! Decoding and validating `ServiceDefinition` and `CheckType` bodies with the
//! agent's defaults and 400 texts.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::http::decode::{DecodeResult, Fields, fields};
use crate::http::schema::{CHECK_FIELDS, SERVICE_FIELDS};
use crate::http::{Reply, bad_request, decode_failed};
use crate::store::model::{Check, CheckKind, CheckStatus, Service};

/// A decoded check definition; `check.id`/`name` may still be empty.
#[derive(Debug)]
pub(crate) struct CheckSpec {
    pub(crate) check: Check,
    pub(crate) status_given: bool,
    alias: bool,
    ttl_given: bool,
}

/// Decodes a register body into the service and its checks (IDs, names defaulted).
pub(crate) fn decode_service(
    v: &Value,
    node: &str,
    min_dereg: Duration,
) -> Result<(Service, Vec<Check>), Reply> {
    let f = fields(v, "ServiceDefinition", SERVICE_FIELDS).map_err(decode_failed)?;
    let mut svc = service_fields(&f).map_err(decode_failed)?;
    svc.node = node.to_owned();
    let specs = check_specs(&f)?;
    validate_service(&mut svc, &f)?;
    let many = specs.len() > 1;
    let mut checks = Vec::new();
    for (i, spec) in specs.into_iter().enumerate() {
        validate_check(&spec)?;
        let mut c = spec.check;
        if c.id.is_empty() {
            c.id = match many {
                true => format!("service:{}:{}", svc.id, i + 1),
                false => format!("service:{}", svc.id),
            };
        }
        if c.name.is_empty() {
            c.name = format!("Service '{}' check", svc.name);
        }
        finish_check(&mut c, node, min_dereg);
        (c.service_id, c.service_name) = (svc.id.clone(), svc.name.clone());
        checks.push(c);
    }
    Ok((svc, checks))
}

/// `Check` (when not empty) then `Checks`, as `ServiceDefinition.CheckTypes` orders them.
fn check_specs(f: &Fields) -> Result<Vec<CheckSpec>, Reply> {
    let single = f
        .raw("Check")
        .filter(|c| c.as_object().is_some_and(|o| !o.is_empty()));
    let many = match f.raw("Checks") {
        None => &[][..],
        Some(Value::Array(items)) => items.as_slice(),
        Some(_) => {
            return Err(decode_failed(
                "json: cannot unmarshal into Go struct field ServiceDefinition.Checks of type structs.CheckTypes",
            ));
        }
    };
    single
        .into_iter()
        .chain(many)
        .map(|c| decode_check(c, "CheckType").map_err(decode_failed))
        .collect()
}

fn service_fields(f: &Fields) -> DecodeResult<Service> {
    let weights = match f.raw("Weights") {
        None => None,
        Some(w) => {
            let w = fields(w, "Weights", &["Passing", "Warning"])?;
            Some((w.int("Passing")?, w.int("Warning")?))
        }
    };
    Ok(Service {
        kind: f.string("Kind")?,
        id: f.string("ID")?,
        name: f.string("Name")?,
        tags: f.strings("Tags")?,
        address: f.string("Address")?,
        tagged_addresses: tagged_addresses(f.raw("TaggedAddresses"))?,
        meta: f.string_map("Meta")?,
        port: f.int("Port")?.max(0) as u64,
        socket_path: f.string("SocketPath")?,
        weights: weights.unwrap_or((-1, -1)),
        enable_tag_override: f.boolean("EnableTagOverride")?,
        proxy: f.raw("Proxy").cloned(),
        connect: f.raw("Connect").cloned(),
        locality: locality(f.raw("Locality"))?,
        ..Service::default()
    })
}

/// `structs.Locality`: `Region` and `Zone`, both `omitempty`; `null` is no locality.
pub(crate) fn locality(v: Option<&Value>) -> DecodeResult<Option<Value>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let f = fields(v, "Locality", &["Region", "Zone"])?;
    let mut out = Map::new();
    for key in ["Region", "Zone"] {
        let value = f.string(key)?;
        if !value.is_empty() {
            out.insert(key.into(), json!(value));
        }
    }
    Ok(Some(Value::Object(out)))
}

fn tagged_addresses(v: Option<&Value>) -> DecodeResult<Map<String, Value>> {
    let Some(Value::Object(obj)) = v else {
        return Ok(Map::new());
    };
    let mut out = Map::new();
    for (k, a) in obj {
        let a = fields(a, "ServiceAddress", &["Address", "Port"])?;
        out.insert(
            k.clone(),
            json!({ "Address": a.string("Address")?, "Port": a.int("Port")? }),
        );
    }
    Ok(out)
}

fn validate_service(svc: &mut Service, f: &Fields) -> Result<(), Reply> {
    if svc.name.is_empty() {
        return Err(bad_request("Missing service name"));
    }
    if svc.id.is_empty() {
        svc.id = svc.name.clone();
    }
    if matches!(svc.address.as_str(), "0.0.0.0" | "::" | "[::]") {
        return Err(bad_request("Invalid service address"));
    }
    if f.raw("Weights").is_some() {
        if svc.weights.0 < 1 {
            return Err(bad_request(
                "Invalid Weights: Passing must be greater than 0",
            ));
        }
        if svc.weights.1 < 0 {
            return Err(bad_request(
                "Invalid Weights: Warning must be greater or equal than 0",
            ));
        }
    } else {
        svc.weights = (1, 1);
    }
    if svc.meta.keys().any(|k| k.is_empty()) {
        return Err(bad_request("Invalid Service Meta: Key cannot be blank"));
    }
    if let Some(text) =
        crate::agent::validate::multierror(&crate::agent::validate::node_service(svc))
    {
        return Err(bad_request(format!("Validation failed: {text}")));
    }
    add_default_tagged_addresses(svc);
    Ok(())
}

/// The agent adds `lan_ipv4`/`wan_ipv4` (or the ipv6 pair) for IP literal addresses.
fn add_default_tagged_addresses(svc: &mut Service) {
    let keys = match svc.address.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => ["lan_ipv4", "wan_ipv4"],
        Ok(IpAddr::V6(_)) => ["lan_ipv6", "wan_ipv6"],
        Err(_) => return,
    };
    for k in keys {
        if !svc.tagged_addresses.contains_key(k) {
            let v = json!({ "Address": svc.address, "Port": svc.port });
            svc.tagged_addresses.insert(k.to_owned(), v);
        }
    }
}

/// Decodes one check body (`CheckType` or `CheckDefinition`).
pub(crate) fn decode_check(v: &Value, type_name: &'static str) -> DecodeResult<CheckSpec> {
    let f = fields(v, type_name, CHECK_FIELDS)?;
    let mut id = f.string("CheckID")?;
    if id.is_empty() {
        id = f.string("ID")?;
    }
    let status = f.string("Status")?;
    let ttl = f.duration("TTL")?;
    let mut script = f.strings("ScriptArgs")?;
    if script.is_empty() {
        script = f.strings("Args")?;
    }
    let alias = !f.string("AliasService")?.is_empty() || !f.string("AliasNode")?.is_empty();
    let kind = if alias {
        CheckKind::Alias {
            service: f.string("AliasService")?,
            node: f.string("AliasNode")?,
        }
    } else {
        check_kind(&f, ttl, script)?
    };
    let check = Check {
        id,
        name: f.string("Name")?,
        notes: f.string("Notes")?,
        service_id: f.string("ServiceID")?,
        // An unknown status is kept as the raw text for validation below.
        output: status.clone(),
        interval: f.duration("Interval")?,
        timeout: f.duration("Timeout")?,
        deregister_after: f.duration("DeregisterCriticalServiceAfter")?,
        kind,
        ..Check::default()
    };
    Ok(CheckSpec {
        check,
        status_given: !status.is_empty(),
        alias,
        ttl_given: ttl.is_some_and(|t| !t.is_zero()),
    })
}

fn check_kind(f: &Fields, ttl: Option<Duration>, script: Vec<String>) -> DecodeResult<CheckKind> {
    let http = f.string("HTTP")?;
    let grpc = f.string("GRPC")?;
    let tcp = f.string("TCP")?;
    Ok(if !http.is_empty() {
        let header = match f.raw("Header") {
            Some(h) => serde_json::from_value(h.clone()).map_err(|e| e.to_string())?,
            None => Default::default(),
        };
        CheckKind::Http {
            url: http,
            method: f.string("Method")?,
            header,
            body: f.string("Body")?,
            tls_skip_verify: f.boolean("TLSSkipVerify")?,
        }
    } else if !grpc.is_empty() {
        CheckKind::Grpc {
            target: grpc,
            use_tls: f.boolean("GRPCUseTLS")?,
        }
    } else if !tcp.is_empty() {
        CheckKind::Tcp(tcp)
    } else if !f.string("UDP")?.is_empty() {
        CheckKind::Unrun("udp")
    } else if !script.is_empty() && !f.string("DockerContainerID")?.is_empty() {
        CheckKind::Unrun("docker")
    } else if !script.is_empty() {
        CheckKind::Script(script)
    } else if !f.string("H2PING")?.is_empty() {
        CheckKind::Unrun("h2ping")
    } else if !f.string("OSService")?.is_empty() {
        CheckKind::Unrun("os_service")
    } else if let Some(ttl) = ttl.filter(|t| !t.is_zero()) {
        CheckKind::Ttl(ttl)
    } else {
        CheckKind::Manual
    })
}

/// Consul's `addCheck` refusal of script checks from the HTTP API unless
/// `enable_script_checks` is on (a plain error: 500).
pub(crate) fn scripts_allowed<'a>(
    cfg: &crate::shared::Config,
    mut checks: impl Iterator<Item = &'a Check>,
) -> Result<(), Reply> {
    if cfg.enable_script_checks || !checks.any(|c| matches!(c.kind, CheckKind::Script(_))) {
        return Ok(());
    }
    Err(crate::http::server_error(
        "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true",
    ))
}

/// `CheckType.Validate` and the status check, with Consul's 400 texts.
pub(crate) fn validate_check(spec: &CheckSpec) -> Result<(), Reply> {
    let c = &spec.check;
    if spec.status_given && CheckStatus::parse(&c.output).is_none() {
        return Err(bad_request(
            "Status for checks must 'passing', 'warning', 'critical'",
        ));
    }
    let interval = c.interval.is_some_and(|d| !d.is_zero());
    let interval_kind = !spec.alias
        && matches!(
            c.kind,
            CheckKind::Http { .. }
                | CheckKind::Grpc { .. }
                | CheckKind::Tcp(_)
                | CheckKind::Script(_)
                | CheckKind::Unrun(_)
        );
    let invalid = |m: &str| Err(bad_request(format!("Invalid check: {m}")));
    if interval && spec.ttl_given {
        return invalid("Interval and TTL cannot both be specified");
    }
    if interval_kind && !interval {
        return invalid(
            "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
        );
    }
    if spec.alias && spec.ttl_given {
        return invalid("TTL must be not be set for Alias checks");
    }
    if spec.alias && interval {
        return invalid("Interval cannot be set for Alias checks");
    }
    if !interval_kind && !spec.alias && !spec.ttl_given {
        return invalid("TTL must be > 0 for TTL checks");
    }
    Ok(())
}

/// Applies status, minimum deregister time and the TTL deadline.
pub(crate) fn finish_check(c: &mut Check, node: &str, min_dereg: Duration) {
    c.node = node.to_owned();
    c.status = CheckStatus::parse(&c.output).unwrap_or(CheckStatus::Critical);
    c.output = String::new();
    if let Some(d) = c.deregister_after.as_mut().filter(|d| **d < min_dereg) {
        tracing::warn!(check = %c.id, "check has deregister interval below minimum");
        *d = min_dereg;
    }
    if let CheckKind::Ttl(ttl) = c.kind {
        c.ttl_deadline = Some(tokio::time::Instant::now() + ttl);
    }
}
