//! The agent's own membership: `leave` (the agent leaves and shuts its API down),
//! `force-leave` of a member (only the agent itself is one) and `monitor` (a log
//! stream with Consul's level check).

use http::StatusCode;

use crate::http::{HResult, Reply, Req, bad_request, server_error};
use crate::shared::Shared;

/// hclog's levels as `logging.ValidateLogLevel` accepts them (any case).
const LOG_LEVELS: &[&str] = &["TRACE", "DEBUG", "INFO", "WARN", "ERR", "ERROR"];

/// `PUT /v1/agent/leave`: the agent leaves the cluster and shuts down
/// (`Agent.Leave`, then `ShutdownAgent`). This answer is written, then the
/// listener closes and every connection closes once its answer is out;
/// `ConsulDev::restart` serves again.
pub(crate) fn leave(shared: &Shared) -> HResult {
    shared.leave();
    Ok(Reply::empty())
}

/// `PUT /v1/agent/force-leave/:node` (`prune`, `wan`): `RemoveFailedNode` on the
/// LAN and WAN pools. The agent is the only member of both (as `node` on the LAN,
/// `node.dc` on the WAN), and removing an alive member does nothing; any other
/// name is no member: a 500 with Serf's text.
pub(crate) fn force_leave(shared: &Shared, req: &Req, node: &str) -> HResult {
    let cfg = &shared.cfg;
    let wan_name = format!("{}.{}", cfg.node_name, cfg.datacenter);
    let wan_node = if node.ends_with(&format!(".{}", cfg.datacenter)) {
        node.to_owned()
    } else {
        format!("{node}.{}", cfg.datacenter)
    };
    let wan = req.has("wan");
    // `ForceLeaveWAN` takes the WAN name as given; `ForceLeave` looks on both pools.
    let found = if wan {
        node == wan_name
    } else {
        node == cfg.node_name || wan_node == wan_name
    };
    if found {
        return Ok(Reply::empty());
    }
    Err(server_error(format!(
        "agent: No node found with name '{node}'"
    )))
}

/// `GET /v1/agent/monitor` (`loglevel`, default `INFO`; `logjson`): 400 `Unknown
/// log level: X` for a level hclog does not have; otherwise a 200 whose body
/// streams the agent's log lines until the client leaves. consul-dev writes no
/// agent log, so the stream stays open and empty.
pub(crate) fn monitor(shared: &Shared, req: &Req) -> HResult {
    let level = req.nonempty("loglevel").unwrap_or("INFO");
    if !LOG_LEVELS.contains(&level.to_uppercase().as_str()) {
        return Err(bad_request(format!("Unknown log level: {level}")));
    }
    let mut reply = Reply::new(StatusCode::OK, bytes::Bytes::new());
    reply.content_type = Some("text/plain; charset=utf-8");
    reply.open_until = Some(shared.left());
    Ok(reply)
}
