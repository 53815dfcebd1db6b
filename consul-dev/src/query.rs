//! Query options (`index`, `wait`, consistency flags, `dc`) and the blocking
//! machinery: index-based for catalog/health, hash-based for agent-local state.
//!
//! `filter` is the `filter` parameter's expression language (go-bexpr).

pub(crate) mod filter;

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::http::decode::parse_go_duration;
use crate::http::{HResult, Reply, Req, bad_request, server_error};
use crate::shared::Shared;
use crate::store::Store;

/// Consul's `default_query_time`.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Consul's `max_query_time`.
const MAX_WAIT: Duration = Duration::from_secs(600);
/// `structs.JitterFraction`.
const JITTER_FRACTION: u32 = 16;

/// The parsed blocking-query options of one request.
#[derive(Debug, Clone)]
pub(crate) struct QueryOpts {
    pub(crate) index: u64,
    pub(crate) hash: Option<String>,
    /// Wait time with jitter added.
    pub(crate) wait: Duration,
    pub(crate) consistency: &'static str,
    /// `?cached`: answered through the agent cache where the endpoint has one.
    pub(crate) cached: bool,
}

/// Parses `dc`, consistency flags, `index` and `wait` with Consul's 400 texts.
pub(crate) fn parse(shared: &Shared, req: &Req) -> Result<QueryOpts, Reply> {
    check_dc(shared, req)?;
    let consistency = consistency(req)?;
    let index = match req.nonempty("index") {
        None => 0,
        Some(v) => v.parse::<u64>().map_err(|_| bad_request("Invalid index"))?,
    };
    let wait = match req.nonempty("wait") {
        None => Duration::ZERO,
        Some(v) => parse_go_duration(v).ok_or_else(|| bad_request("Invalid wait time"))?,
    };
    let hash = req.nonempty("hash").map(str::to_owned);
    Ok(QueryOpts {
        index,
        hash,
        wait: with_jitter(wait),
        consistency,
        cached: req.has("cached"),
    })
}

/// `RPCQueryTimeout`: cap at 10 min, default 5 min, plus up to wait/16 jitter.
fn with_jitter(wait: Duration) -> Duration {
    let wait = if wait > MAX_WAIT {
        MAX_WAIT
    } else if wait.is_zero() {
        DEFAULT_WAIT
    } else {
        wait
    };
    let max_jitter = (wait / JITTER_FRACTION).as_nanos() as u64;
    let jitter = if max_jitter == 0 {
        0
    } else {
        rand::rng().random_range(0..max_jitter)
    };
    wait + Duration::from_nanos(jitter)
}

/// Rejects other datacenters as a lone dev agent does.
pub(crate) fn check_dc(shared: &Shared, req: &Req) -> Result<(), Reply> {
    match req.nonempty("dc") {
        Some(dc) if dc != shared.cfg.datacenter => Err(server_error("No path to datacenter")),
        _ => Ok(()),
    }
}

fn consistency(req: &Req) -> Result<&'static str, Reply> {
    let stale = req.has("stale");
    let consistent = req.has("consistent");
    if stale && consistent {
        return Err(bad_request(
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
        ));
    }
    if req.has("cached") && consistent {
        return Err(bad_request(
            "Cannot specify ?cached with ?consistent, conflicting semantics.",
        ));
    }
    if let Some(v) = req.nonempty("max_stale") {
        let d = parse_go_duration(v)
            .ok_or_else(|| bad_request(format!("Invalid max_stale value {v:?}")))?;
        if !d.is_zero() && !consistent {
            return Ok("stale");
        }
    }
    Ok(if stale {
        "stale"
    } else if consistent {
        "consistent"
    } else {
        "leader"
    })
}

/// Runs `compute` until its index passes `opts.index`, the wait ends, or the index
/// is reset (a snapshot restore ends waits in Consul too); returns the last result.
pub(crate) async fn block<T>(
    shared: &Shared,
    opts: &QueryOpts,
    mut compute: impl FnMut(&Store) -> (u64, T),
) -> (u64, T) {
    let mut rx = shared.changed.subscribe();
    let deadline = Instant::now() + opts.wait;
    let mut epoch = None;
    let mut waiting = None;
    loop {
        rx.borrow_and_update();
        let (index, value, now_epoch) = {
            let store = shared.store();
            let (i, v) = compute(&store);
            (i.max(1), v, store.epoch)
        };
        let start = *epoch.get_or_insert(now_epoch);
        if opts.index == 0 || index > opts.index || start != now_epoch {
            return (index, value);
        }
        // Counted only once the epoch is taken: a reset seen by a test after this
        // point ends the wait.
        waiting.get_or_insert_with(|| shared.waiting());
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            _ => return (index, value),
        }
    }
}

/// [`block`] for queries whose index is cheap to compute and whose result is not:
/// `index` is checked on every wake-up, and `build` runs once, for the answer. A
/// change elsewhere in the catalog then costs a waiting query one index look-up.
pub(crate) async fn block_indexed<T>(
    shared: &Shared,
    opts: &QueryOpts,
    index: impl Fn(&Store) -> u64,
    build: impl FnOnce(&Store) -> T,
) -> (u64, T) {
    block(shared, opts, |s| (index(s), ())).await;
    // The index may have moved since the wait ended: answer with the one the
    // result is built from.
    let store = shared.store();
    (index(&store).max(1), build(&store))
}

/// Hash-based blocking (`LocalBlockingQuery`): waits while `compute`'s hash equals
/// `opts.hash`. `compute` returns `None` for a missing resource.
pub(crate) async fn block_hash<T>(
    shared: &Shared,
    opts: &QueryOpts,
    mut compute: impl FnMut(&Store) -> Option<(String, T)>,
) -> Option<(String, T)> {
    let mut rx = shared.changed.subscribe();
    let deadline = Instant::now() + opts.wait;
    let mut waiting = None;
    loop {
        rx.borrow_and_update();
        let out = compute(&shared.store())?;
        match &opts.hash {
            Some(h) if *h == out.0 => {}
            _ => return Some(out),
        }
        waiting.get_or_insert_with(|| shared.waiting());
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            _ => return Some(out),
        }
    }
}

/// Parses `?passing` like Consul (bare flag is true; else `strconv.ParseBool`).
pub(crate) fn passing(req: &Req) -> Result<bool, Reply> {
    match req.param("passing") {
        None | Some("") => Ok(req.has("passing")),
        Some(v) => parse_bool(v).ok_or_else(|| bad_request("Invalid value for ?passing")),
    }
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `node-meta` filters (`key:value`, AND).
pub(crate) fn node_meta(req: &Req) -> Vec<(String, String)> {
    req.params("node-meta")
        .map(|kv| {
            let (k, v) = kv.split_once(':').unwrap_or((kv, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// `peer`: read an imported service's view from that cluster peer. The dev agent has
/// no peerings and imports nothing, so every peer's view is empty, as Consul answers
/// for a peer it has imported nothing from.
pub(crate) fn peer(req: &Req) -> bool {
    req.nonempty("peer").is_some()
}

/// The empty answer of a `peer` read: index 1 (nothing ever imported), blocking
/// until the wait ends.
pub(crate) async fn peer_view(
    shared: &Shared,
    opts: &QueryOpts,
    empty: serde_json::Value,
) -> HResult {
    let (index, out) = block(shared, opts, |_| (1, empty.clone())).await;
    answer(index, opts, &out)
}

/// A finished JSON query answer with its meta headers.
pub(crate) fn answer(index: u64, opts: &QueryOpts, body: &serde_json::Value) -> HResult {
    Ok(Reply::json(body).meta(index, opts.consistency))
}

/// [`answer`] for endpoints the agent cache serves (health and catalog service
/// reads): with `?cached`, `X-Cache: MISS`, since every read here is fresh.
pub(crate) fn answer_cacheable(index: u64, opts: &QueryOpts, body: &serde_json::Value) -> HResult {
    let reply = Reply::json(body).meta(index, opts.consistency);
    Ok(match opts.cached {
        true => reply.header("X-Cache", "MISS"),
        false => reply,
    })
}
