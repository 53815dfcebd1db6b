//! Operator writes and reports a dev agent answers: raft peer removal and
//! leadership transfer (one voter, so both refuse as raft does), the autopilot
//! configuration (stored, with `cas`), the gossip keyring (encryption is off, so
//! every operation fails as Serf reports it) and `usage`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::http::decode::{body_json, fields};
use crate::http::{HResult, Reply, Req, bad_request, server_error};
use crate::query::{self, answer};
use crate::shared::Shared;
use crate::store::Store;
use crate::store::records::Autopilot;
use crate::store::render::go_duration;

/// The agent's raft address, as `/v1/operator/raft/configuration` lists it.
use crate::agent::info::LEADER_ADDR;

/// `DELETE /v1/operator/raft/peer?id=|address=`: the agent is the only voter, and
/// raft refuses a configuration without one; anything else is not a peer.
pub(crate) fn raft_peer(shared: &Shared, req: &Req) -> HResult {
    query::check_dc(shared, req)?;
    match (req.param("id"), req.param("address")) {
        (None, None) => Err(bad_request(
            "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
        )),
        (Some(_), Some(_)) => Err(bad_request("Must specify only one of ?id or ?address")),
        (Some(id), None) if id != shared.cfg.node_id => Err(server_error(format!(
            "id {id:?} was not found in the Raft configuration"
        ))),
        (None, Some(addr)) if addr != LEADER_ADDR => Err(server_error(format!(
            "address {addr:?} was not found in the Raft configuration"
        ))),
        // hashicorp/raft's `checkConfiguration` on the configuration left.
        _ => Err(server_error(
            "need at least one voter in configuration: {[]}",
        )),
    }
}

/// `POST /v1/operator/raft/transfer-leader[?id=]`: raft has no other voter to hand
/// leadership to. The error comes back through Consul's internal gRPC client.
pub(crate) fn transfer_leader(shared: &Shared, req: &Req) -> HResult {
    let why = match req.nonempty("id") {
        None => "cannot find peer".to_owned(),
        // raft finds no replication state for itself, and formats the `*ServerID`
        // it looked up with `%v`: a pointer, whose value here is made up.
        Some(id) if id == shared.cfg.node_id => {
            "cannot find replication state for 0xc000a1b2c0".to_owned()
        }
        Some(id) => format!("Could not find address for server id {id}"),
    };
    Err(server_error(format!(
        "rpc error: code = Unknown desc = {why}"
    )))
}

impl Autopilot {
    fn to_json(&self) -> Value {
        json!({
            "CleanupDeadServers": self.cleanup_dead_servers,
            "LastContactThreshold": go_duration(self.last_contact_threshold),
            "MaxTrailingLogs": self.max_trailing_logs,
            "MinQuorum": self.min_quorum,
            "ServerStabilizationTime": go_duration(self.server_stabilization_time),
            "RedundancyZoneTag": self.redundancy_zone_tag,
            "DisableUpgradeMigration": self.disable_upgrade_migration,
            "UpgradeVersionTag": self.upgrade_version_tag,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }
}

/// `GET /v1/operator/autopilot/configuration`.
pub(crate) fn autopilot_get(shared: &Shared, req: &Req) -> HResult {
    let opts = query::parse(shared, req)?;
    let store = shared.store();
    let conf = store.autopilot.clone().unwrap_or_default();
    answer(store.index, &opts, &conf.to_json())
}

const AUTOPILOT_FIELDS: &[&str] = &[
    "CleanupDeadServers",
    "LastContactThreshold",
    "MaxTrailingLogs",
    "MinQuorum",
    "ServerStabilizationTime",
    "RedundancyZoneTag",
    "DisableUpgradeMigration",
    "UpgradeVersionTag",
    "CreateIndex",
    "ModifyIndex",
];

/// `PUT /v1/operator/autopilot/configuration[?cas=]`: fields left out take
/// `api.NewAutopilotConfiguration`'s values (dead-server cleanup on, 200 ms,
/// 10 s); `true`, or with `cas` whether the index matched.
pub(crate) fn autopilot_put(shared: &Shared, req: &Req) -> HResult {
    query::check_dc(shared, req)?;
    let mut conf = decode_autopilot(&req.body)?;
    let cas = match req.param("cas") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            bad_request(format!(
                "Error parsing cas value: strconv.ParseUint: parsing {v:?}: invalid syntax"
            ))
        })?),
    };
    let ok = shared.write(|s| {
        let current = s.autopilot.clone().unwrap_or_default();
        if cas.is_some_and(|c| c != current.modify_index) {
            return false;
        }
        let idx = s.bump();
        (conf.create_index, conf.modify_index) = (current.create_index, idx);
        s.autopilot = Some(conf);
        true
    });
    Ok(Reply::json(&json!(cas.is_none() || ok)))
}

/// An `api.AutopilotConfiguration` body over `api.NewAutopilotConfiguration`'s
/// values; 400 `Error parsing autopilot config: …`.
fn decode_autopilot(body: &[u8]) -> Result<Autopilot, Reply> {
    let parse_err = |e: String| bad_request(format!("Error parsing autopilot config: {e}"));
    let body = body_json(body).map_err(parse_err)?;
    let f = fields(&body, "AutopilotConfiguration", AUTOPILOT_FIELDS).map_err(parse_err)?;
    let base = Autopilot::default();
    let uint = |name: &str| -> Result<Option<u64>, Reply> {
        match f.raw(name) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                parse_err(format!(
                    "json: cannot unmarshal {} into Go struct field AutopilotConfiguration.{name} of type uint64",
                    crate::http::decode::kind_of(v)
                ))
            }),
        }
    };
    let flag = |name: &str, default: bool| match f.raw(name) {
        None => Ok(default),
        Some(_) => f.boolean(name).map_err(parse_err),
    };
    let duration = |name: &str, default: Duration| {
        f.duration(name)
            .map(|d| d.unwrap_or(default))
            .map_err(parse_err)
    };
    Ok(Autopilot {
        cleanup_dead_servers: flag("CleanupDeadServers", base.cleanup_dead_servers)?,
        last_contact_threshold: duration("LastContactThreshold", base.last_contact_threshold)?,
        max_trailing_logs: uint("MaxTrailingLogs")?.unwrap_or(base.max_trailing_logs),
        min_quorum: uint("MinQuorum")?.unwrap_or(0),
        server_stabilization_time: duration(
            "ServerStabilizationTime",
            base.server_stabilization_time,
        )?,
        redundancy_zone_tag: f.string("RedundancyZoneTag").map_err(parse_err)?,
        disable_upgrade_migration: flag("DisableUpgradeMigration", false)?,
        upgrade_version_tag: f.string("UpgradeVersionTag").map_err(parse_err)?,
        create_index: 0,
        modify_index: 0,
    })
}

/// `/v1/operator/keyring` (GET list, POST install, PUT use, DELETE remove): the
/// dev agent has no gossip encryption, so Serf's keyring query fails on every
/// member of each pool (the WAN, then the datacenter's LAN; the LAN only with
/// `local-only`), and `keyringErrorsOrNil` answers a 500 listing them.
pub(crate) fn keyring(shared: &Shared, req: &Req) -> HResult {
    let get = req.method == http::Method::GET;
    let local_only = keyring_args(req, get)?;
    let why = if get {
        "Keyring is empty (encryption not enabled)"
    } else {
        "No keyring to modify (encryption not enabled)"
    };
    let cfg = &shared.cfg;
    let mut errors = Vec::new();
    if !local_only {
        errors.push("WAN error: 1/1 nodes reported failure".to_owned());
        errors.push(format!("{}.{}: {why}", cfg.node_name, cfg.datacenter));
    }
    errors.push(format!(
        "{} (LAN) error: 1/1 nodes reported failure",
        cfg.datacenter
    ));
    errors.push(format!("{}: {why}", cfg.node_name));
    Err(server_error(
        crate::agent::validate::multierror(&errors).unwrap_or_default(),
    ))
}

/// `keyringArgs` from the body (writes) and the query: `relay-factor` and
/// `local-only` with their 400s; returns `local-only`.
fn keyring_args(req: &Req, get: bool) -> Result<bool, Reply> {
    if !get {
        let body = body_json(&req.body).map_err(crate::http::decode_failed)?;
        let names = ["Key", "Token", "RelayFactor", "LocalOnly"];
        fields(&body, "keyringArgs", &names).map_err(crate::http::decode_failed)?;
    }
    if let Some(v) = req.nonempty("relay-factor") {
        let n: i64 = v.parse().map_err(|_| {
            bad_request(format!(
                "Error parsing relay factor: strconv.Atoi: parsing {v:?}: invalid syntax"
            ))
        })?;
        if !(0..=5).contains(&n) {
            return Err(bad_request(
                "Invalid relay-factor: Relay factor must be in range: [0, 5]",
            ));
        }
    }
    let mut local_only = false;
    if let Some(v) = req.nonempty("local-only") {
        local_only = query::parse_bool(v).ok_or_else(|| {
            bad_request(format!(
                "Error parsing local-only: strconv.ParseBool: parsing {v:?}: invalid syntax"
            ))
        })?;
        if local_only && !get {
            return Err(bad_request(
                "Invalid use of local-only: local-only can only be set for GET requests",
            ));
        }
    }
    Ok(local_only)
}

/// The Connect kinds `ServiceUsage` counts instances of.
const CONNECT_KINDS: &[&str] = &[
    "api-gateway",
    "connect-native",
    "connect-proxy",
    "ingress-gateway",
    "mesh-gateway",
    "terminating-gateway",
];

/// `GET /v1/operator/usage`: `Operator.Usage`'s counts for this datacenter
/// (`Store.ServiceUsage`: names, instances, Connect instances per kind, billable
/// instances), with
/// its query meta in the body as Consul returns the whole `structs.Usage`.
pub(crate) async fn usage(shared: &Shared, req: &Req) -> HResult {
    let opts = query::parse(shared, req)?;
    let (index, counts) = query::block(shared, &opts, |s| (s.index, usage_of(s))).await;
    let body = json!({
        "Usage": { shared.cfg.datacenter.clone(): counts },
        "Index": index,
        "LastContact": 0,
        "KnownLeader": true,
        "ConsistencyLevel": opts.consistency,
        "NotModified": false,
        "Backend": 0,
        "ResultsFilteredByACLs": false,
    });
    answer(index, &opts, &body)
}

fn usage_of(s: &Store) -> Value {
    let names: std::collections::BTreeSet<&str> =
        s.services.values().map(|svc| svc.name.as_str()).collect();
    let mut connect: serde_json::Map<String, Value> = CONNECT_KINDS
        .iter()
        .map(|k| ((*k).to_owned(), json!(0)))
        .collect();
    let mut billable = 0;
    for svc in s.services.values() {
        let native = svc.connect.as_ref().and_then(|c| c["Native"].as_bool()) == Some(true);
        let kind = if native {
            "connect-native"
        } else {
            svc.kind.as_str()
        };
        if let Some(n) = connect.get_mut(kind) {
            *n = json!(n.as_u64().unwrap_or(0) + 1);
        }
        if svc.kind.is_empty() && svc.name != crate::store::model::CONSUL_SERVICE {
            billable += 1;
        }
    }
    json!({
        "Services": names.len(),
        "ServiceInstances": s.services.len(),
        "ConnectServiceInstances": connect,
        "BillableServiceInstances": billable,
    })
}
