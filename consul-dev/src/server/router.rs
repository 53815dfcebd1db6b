//! Routing: Consul's path table with its methods (405 + `Allow` otherwise), the
//! ACL gate, and dispatch to the endpoint modules.

use std::sync::Arc;

use http::{Method, StatusCode};

use crate::http::{HResult, Reply, Req};
use crate::shared::Shared;
use crate::{admin, agent, catalog, config, health, kv, misc, operator, prepared, session};

/// A matched endpoint with the rest of its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ep {
    AgentSelf,
    AgentMembers,
    AgentServices,
    AgentService,
    AgentRegister,
    AgentDeregister,
    AgentMaintenance,
    AgentHealthId,
    AgentHealthName,
    NodeMaintenance,
    AgentChecks,
    CheckRegister,
    CheckDeregister,
    CheckPass,
    CheckWarn,
    CheckFail,
    CheckUpdate,
    HealthService,
    HealthConnect,
    HealthIngress,
    CatalogConnect,
    GatewayServices,
    DiscoveryChain,
    HealthChecks,
    HealthNode,
    HealthState,
    CatalogServices,
    CatalogService,
    CatalogNodes,
    CatalogNode,
    CatalogNodeServices,
    CatalogRegister,
    CatalogDeregister,
    CatalogDatacenters,
    StatusLeader,
    StatusPeers,
    Kv,
    SessionCreate,
    SessionDestroy,
    SessionInfo,
    SessionNode,
    SessionList,
    SessionRenew,
    EventFire,
    EventList,
    Accepted,
    AgentLeave,
    ForceLeave,
    AgentMonitor,
    CoordinateDatacenters,
    CoordinateNodes,
    CoordinateNode,
    CoordinateUpdate,
    RaftConfiguration,
    Txn,
    Version,
    TokenSelf,
    Queries,
    Query,
    Acl,
    ConfigApply,
    Config,
    AgentToken,
    ConnectDisabled,
    AgentMetrics,
    AgentHost,
    AutopilotHealth,
    AutopilotState,
    AutopilotConfiguration,
    RaftPeer,
    TransferLeader,
    Keyring,
    Usage,
}

const GET: &[Method] = &[Method::GET];
const PUT: &[Method] = &[Method::PUT];
const ANY: &[Method] = &[Method::GET, Method::PUT, Method::POST, Method::DELETE];

/// (path, is prefix, methods, endpoint); exact paths before the prefixes they share.
const ROUTES: &[(&str, bool, &[Method], Ep)] = &[
    ("/v1/agent/self", false, GET, Ep::AgentSelf),
    ("/v1/agent/members", false, GET, Ep::AgentMembers),
    ("/v1/agent/services", false, GET, Ep::AgentServices),
    ("/v1/agent/service/register", false, PUT, Ep::AgentRegister),
    (
        "/v1/agent/service/deregister/",
        true,
        PUT,
        Ep::AgentDeregister,
    ),
    (
        "/v1/agent/service/maintenance/",
        true,
        PUT,
        Ep::AgentMaintenance,
    ),
    ("/v1/agent/service/", true, GET, Ep::AgentService),
    ("/v1/agent/health/service/id/", true, GET, Ep::AgentHealthId),
    (
        "/v1/agent/health/service/name/",
        true,
        GET,
        Ep::AgentHealthName,
    ),
    ("/v1/agent/maintenance", false, PUT, Ep::NodeMaintenance),
    ("/v1/agent/checks", false, GET, Ep::AgentChecks),
    ("/v1/agent/check/register", false, PUT, Ep::CheckRegister),
    (
        "/v1/agent/check/deregister/",
        true,
        PUT,
        Ep::CheckDeregister,
    ),
    ("/v1/agent/check/pass/", true, PUT, Ep::CheckPass),
    ("/v1/agent/check/warn/", true, PUT, Ep::CheckWarn),
    ("/v1/agent/check/fail/", true, PUT, Ep::CheckFail),
    ("/v1/agent/check/update/", true, PUT, Ep::CheckUpdate),
    ("/v1/health/service/", true, GET, Ep::HealthService),
    ("/v1/health/connect/", true, GET, Ep::HealthConnect),
    ("/v1/health/ingress/", true, GET, Ep::HealthIngress),
    ("/v1/catalog/connect/", true, GET, Ep::CatalogConnect),
    (
        "/v1/catalog/gateway-services/",
        true,
        GET,
        Ep::GatewayServices,
    ),
    ("/v1/health/checks/", true, GET, Ep::HealthChecks),
    ("/v1/health/node/", true, GET, Ep::HealthNode),
    ("/v1/health/state/", true, GET, Ep::HealthState),
    ("/v1/catalog/services", false, GET, Ep::CatalogServices),
    ("/v1/catalog/service/", true, GET, Ep::CatalogService),
    ("/v1/catalog/nodes", false, GET, Ep::CatalogNodes),
    ("/v1/catalog/node/", true, GET, Ep::CatalogNode),
    (
        "/v1/catalog/node-services/",
        true,
        GET,
        Ep::CatalogNodeServices,
    ),
    ("/v1/catalog/register", false, PUT, Ep::CatalogRegister),
    ("/v1/catalog/deregister", false, PUT, Ep::CatalogDeregister),
    (
        "/v1/catalog/datacenters",
        false,
        GET,
        Ep::CatalogDatacenters,
    ),
    ("/v1/status/leader", false, GET, Ep::StatusLeader),
    ("/v1/status/peers", false, GET, Ep::StatusPeers),
    ("/v1/txn", false, PUT, Ep::Txn),
    (
        "/v1/query",
        false,
        &[Method::GET, Method::POST],
        Ep::Queries,
    ),
    (
        "/v1/query/",
        true,
        &[Method::GET, Method::PUT, Method::DELETE],
        Ep::Query,
    ),
    ("/v1/agent/version", false, GET, Ep::Version),
    ("/v1/acl/token/self", false, GET, Ep::TokenSelf),
    ("/v1/acl/", true, ANY, Ep::Acl),
    ("/v1/agent/token/", true, PUT, Ep::AgentToken),
    ("/v1/config", false, PUT, Ep::ConfigApply),
    (
        "/v1/config/",
        true,
        &[Method::GET, Method::DELETE],
        Ep::Config,
    ),
    ("/v1/agent/metrics", false, GET, Ep::AgentMetrics),
    ("/v1/agent/host", false, GET, Ep::AgentHost),
    ("/v1/agent/connect/", true, ANY, Ep::ConnectDisabled),
    ("/v1/connect/", true, ANY, Ep::ConnectDisabled),
    (
        "/v1/operator/autopilot/health",
        false,
        GET,
        Ep::AutopilotHealth,
    ),
    (
        "/v1/operator/autopilot/state",
        false,
        GET,
        Ep::AutopilotState,
    ),
    (
        "/v1/operator/autopilot/configuration",
        false,
        &[Method::GET, Method::PUT],
        Ep::AutopilotConfiguration,
    ),
    (
        "/v1/operator/raft/peer",
        false,
        &[Method::DELETE],
        Ep::RaftPeer,
    ),
    (
        "/v1/operator/raft/transfer-leader",
        false,
        &[Method::POST],
        Ep::TransferLeader,
    ),
    (
        "/v1/operator/keyring",
        false,
        &[Method::GET, Method::POST, Method::PUT, Method::DELETE],
        Ep::Keyring,
    ),
    ("/v1/operator/usage", false, GET, Ep::Usage),
    (
        "/v1/discovery-chain/",
        true,
        &[Method::GET, Method::POST],
        Ep::DiscoveryChain,
    ),
    ("/v1/event/fire/", true, PUT, Ep::EventFire),
    ("/v1/event/list", false, GET, Ep::EventList),
    ("/v1/agent/join/", true, PUT, Ep::Accepted),
    ("/v1/agent/leave", false, PUT, Ep::AgentLeave),
    ("/v1/agent/force-leave/", true, PUT, Ep::ForceLeave),
    ("/v1/agent/monitor", false, GET, Ep::AgentMonitor),
    ("/v1/agent/reload", false, PUT, Ep::Accepted),
    (
        "/v1/coordinate/datacenters",
        false,
        GET,
        Ep::CoordinateDatacenters,
    ),
    ("/v1/coordinate/nodes", false, GET, Ep::CoordinateNodes),
    ("/v1/coordinate/node/", true, GET, Ep::CoordinateNode),
    ("/v1/coordinate/update", false, PUT, Ep::CoordinateUpdate),
    (
        "/v1/operator/raft/configuration",
        false,
        GET,
        Ep::RaftConfiguration,
    ),
    ("/v1/session/create", false, PUT, Ep::SessionCreate),
    ("/v1/session/destroy/", true, PUT, Ep::SessionDestroy),
    ("/v1/session/info/", true, GET, Ep::SessionInfo),
    ("/v1/session/node/", true, GET, Ep::SessionNode),
    ("/v1/session/list", false, GET, Ep::SessionList),
    ("/v1/session/renew/", true, PUT, Ep::SessionRenew),
    (
        "/v1/kv/",
        true,
        &[Method::GET, Method::PUT, Method::DELETE],
        Ep::Kv,
    ),
];

/// Routes one request to its handler and turns its result into a reply.
pub(crate) async fn route(shared: &Arc<Shared>, req: Req) -> Reply {
    if req.path.starts_with(admin::PREFIX) {
        return admin::handle(shared, &req).unwrap_or_else(|e| e);
    }
    if req.path == "/" {
        // Consul's index page when the UI is off (consul-dev has no UI).
        return Reply::text(
            StatusCode::OK,
            "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration and restart.",
        );
    }
    let Some((prefix, methods, ep)) = lookup(&req.path) else {
        // Consul's `Index` handler, with its trailing newline.
        let msg = if req.path.contains("/v1/") {
            "Invalid URL path: not a recognized HTTP API endpoint\n"
        } else {
            "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n"
        };
        return Reply::text(StatusCode::NOT_FOUND, msg);
    };
    let allow = allow_header(methods);
    if req.method == Method::OPTIONS {
        return Reply::empty().header("Allow", allow);
    }
    if !methods.contains(&req.method) {
        let msg = format!("method {} not allowed", req.method);
        return Reply::text(StatusCode::METHOD_NOT_ALLOWED, msg).header("Allow", allow);
    }
    if let Err(denied) = acl(shared, &req, ep) {
        return denied;
    }
    let rest = req.path[prefix.len()..].to_owned();
    let reply = dispatch(shared, &req, ep, &rest)
        .await
        .unwrap_or_else(|e| e);
    if req.has("pretty") {
        reply.pretty()
    } else {
        reply
    }
}

fn lookup(path: &str) -> Option<(&'static str, &'static [Method], Ep)> {
    ROUTES.iter().find_map(|(p, prefix, methods, ep)| {
        let hit = if *prefix {
            path.starts_with(p)
        } else {
            path == *p
        };
        hit.then_some((*p, *methods, *ep))
    })
}

fn allow_header(methods: &[Method]) -> String {
    let mut out = String::from("OPTIONS");
    for m in methods {
        out.push(',');
        out.push_str(m.as_str());
    }
    out
}

/// The required token, if any: a missing one is the anonymous token (denied), a
/// wrong one is not found. Status endpoints and the datacenter list need no ACL.
fn acl(shared: &Shared, req: &Req, ep: Ep) -> Result<(), Reply> {
    let Some(required) = &shared.cfg.acl_token else {
        return Ok(());
    };
    if matches!(
        ep,
        Ep::StatusLeader | Ep::StatusPeers | Ep::CatalogDatacenters
    ) {
        return Ok(());
    }
    match req.token() {
        Some(t) if t == *required => Ok(()),
        Some(_) => Err(Reply::text(StatusCode::FORBIDDEN, "ACL not found")),
        None => Err(Reply::text(StatusCode::FORBIDDEN, "Permission denied")),
    }
}

async fn dispatch(shared: &Arc<Shared>, req: &Req, ep: Ep, rest: &str) -> HResult {
    match ep {
        Ep::AgentSelf => agent::info::agent_self(shared),
        Ep::AgentMembers => agent::info::members(shared, req),
        Ep::AgentServices => agent::services(shared, req),
        Ep::AgentService => agent::service(shared, req, rest).await,
        Ep::AgentRegister => agent::register(shared, req),
        Ep::AgentDeregister => agent::deregister(shared, rest),
        Ep::AgentMaintenance => agent::maintenance(shared, req, rest),
        Ep::AgentHealthId => agent::health::by_id(shared, req, rest),
        Ep::AgentHealthName => agent::health::by_name(shared, req, rest),
        Ep::NodeMaintenance => agent::node_maintenance(shared, req),
        Ep::AgentChecks => agent::checks_api::list(shared, req),
        Ep::CheckRegister => agent::checks_api::register(shared, req),
        Ep::CheckDeregister => agent::checks_api::deregister(shared, rest),
        Ep::CheckPass => agent::checks_api::ttl(shared, req, rest, "passing"),
        Ep::CheckWarn => agent::checks_api::ttl(shared, req, rest, "warning"),
        Ep::CheckFail => agent::checks_api::ttl(shared, req, rest, "critical"),
        Ep::CheckUpdate => agent::checks_api::update(shared, req, rest),
        Ep::HealthService => health::service(shared, req, rest, health::Entries::Service).await,
        Ep::HealthConnect => health::service(shared, req, rest, health::Entries::Connect).await,
        Ep::HealthIngress => health::service(shared, req, rest, health::Entries::Ingress).await,
        Ep::CatalogConnect => catalog::connect(shared, req, rest).await,
        Ep::GatewayServices => catalog::gateway::services(shared, req, rest).await,
        Ep::DiscoveryChain => config::chain::read(shared, req, rest).await,
        Ep::HealthChecks => health::checks(shared, req, rest).await,
        Ep::HealthNode => health::node(shared, req, rest).await,
        Ep::HealthState => health::state(shared, req, rest).await,
        Ep::CatalogServices => catalog::services(shared, req).await,
        Ep::CatalogService => catalog::service(shared, req, rest).await,
        Ep::CatalogNodes => catalog::nodes(shared, req).await,
        Ep::CatalogNode => catalog::node(shared, req, rest, false).await,
        Ep::CatalogNodeServices => catalog::node(shared, req, rest, true).await,
        Ep::CatalogRegister => catalog::register(shared, req),
        Ep::CatalogDeregister => catalog::deregister(shared, req),
        Ep::CatalogDatacenters => Ok(Reply::json(&serde_json::json!([shared.cfg.datacenter]))),
        Ep::StatusLeader => Ok(Reply::json(&serde_json::json!("127.0.0.1:8300"))),
        Ep::StatusPeers => Ok(Reply::json(&serde_json::json!(["127.0.0.1:8300"]))),
        Ep::Kv => kv::handle(shared, req, rest).await,
        Ep::Txn => kv::txn::handle(shared, req),
        Ep::Queries => prepared::collection(shared, req).await,
        Ep::Query => prepared::item(shared, req, rest).await,
        Ep::Version => misc::version(),
        Ep::TokenSelf => misc::token_self(shared),
        Ep::EventFire => misc::fire_event(shared, req, rest),
        Ep::EventList => misc::list_events(shared, req).await,
        Ep::Accepted => misc::accepted(),
        Ep::AgentLeave => agent::membership::leave(shared),
        Ep::ForceLeave => agent::membership::force_leave(shared, req, rest),
        Ep::AgentMonitor => agent::membership::monitor(shared, req),
        Ep::CoordinateDatacenters => misc::coordinate_datacenters(shared),
        Ep::CoordinateNodes => misc::coordinate_nodes(shared, req).await,
        Ep::CoordinateNode => misc::coordinate_node(shared, req, rest).await,
        Ep::CoordinateUpdate => misc::coordinate_update(shared, req),
        Ep::RaftConfiguration => misc::raft_configuration(shared),
        Ep::SessionCreate => session::create(shared, req),
        Ep::SessionDestroy => session::destroy(shared, req, rest),
        Ep::SessionInfo => session::info(shared, req, rest).await,
        Ep::SessionNode => session::node(shared, req, rest).await,
        Ep::SessionList => session::list(shared, req).await,
        Ep::SessionRenew => session::renew(shared, req, rest),
        Ep::Acl => operator::acl(shared),
        Ep::ConfigApply => config::apply(shared, req),
        Ep::Config => config::handle(shared, req, rest).await,
        Ep::AgentToken => operator::agent_token(shared),
        Ep::ConnectDisabled => operator::connect_disabled(),
        Ep::AgentMetrics => operator::metrics(shared),
        Ep::AgentHost => operator::host(),
        Ep::AutopilotHealth => operator::autopilot_health(shared),
        Ep::AutopilotState => operator::autopilot_state(shared),
        Ep::AutopilotConfiguration if req.method == Method::PUT => {
            operator::ops::autopilot_put(shared, req)
        }
        Ep::AutopilotConfiguration => operator::ops::autopilot_get(shared, req),
        Ep::RaftPeer => operator::ops::raft_peer(shared, req),
        Ep::TransferLeader => operator::ops::transfer_leader(shared, req),
        Ep::Keyring => operator::ops::keyring(shared, req),
        Ep::Usage => operator::ops::usage(shared, req).await,
    }
}
