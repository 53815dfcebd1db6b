//! Background check machinery: TTL expiry, the critical-service reaper, and the
//! runners of HTTP, gRPC and TCP checks. All are owned by the registry and end
//! with it.
//!
//! `probe` runs one HTTP, TCP, gRPC or script check.

pub(crate) mod probe;

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use crate::shared::Shared;
use crate::store::model::{Check, CheckKind, CheckStatus};

/// Consul's default check timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// `CheckMonitor`'s default timeout for scripts.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Turns TTL checks critical when their deadline passes; sleeps until the next one.
pub(crate) async fn ttl_loop(shared: Arc<Shared>) {
    loop {
        let next = expire_due(&shared);
        let notified = shared.timers.notified();
        match next {
            Some(at) => tokio::select! {
                _ = sleep_until(at) => {}
                _ = notified => {}
            },
            None => notified.await,
        }
    }
}

/// Expires due TTL checks; returns the next deadline.
fn expire_due(shared: &Shared) -> Option<Instant> {
    let now = Instant::now();
    let mut store = shared.store();
    let due: Vec<(String, String, String)> = store
        .checks
        .values()
        .filter(|c| c.ttl_deadline.is_some_and(|d| d <= now))
        .map(|c| (c.node.clone(), c.id.clone(), expired_output(&c.output)))
        .collect();
    for (node, id, output) in &due {
        if let Some(c) = store.checks.get_mut(&(node.clone(), id.clone())) {
            c.ttl_deadline = None;
        }
        tracing::debug!(check = %id, "consul-dev: check missed TTL, is now critical");
        store.set_check_status(node, id, CheckStatus::Critical, output);
    }
    let next_check = store.checks.values().filter_map(|c| c.ttl_deadline).min();
    let (expired, next_session) = crate::session::expire(&mut store, now);
    let next = next_check.into_iter().chain(next_session).min();
    drop(store);
    if !due.is_empty() || expired {
        shared.changed.send_modify(|g| *g = g.wrapping_add(1));
    }
    next
}

fn expired_output(last: &str) -> String {
    const PREFIX: &str = "TTL expired";
    if last.is_empty() || last.starts_with(PREFIX) {
        return PREFIX.to_owned();
    }
    format!("{PREFIX} (last output before timeout follows): {last}")
}

/// Every `reap_interval`, deregisters local services with a check critical for
/// longer than its `DeregisterCriticalServiceAfter`.
pub(crate) async fn reap_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.cfg.reap_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        reap(&shared);
    }
}

fn reap(shared: &Shared) {
    let now = Instant::now();
    let node = shared.cfg.node_name.clone();
    let doomed: Vec<String> = shared
        .store()
        .checks
        .values()
        .filter(|c| c.node == node && !c.service_id.is_empty())
        .filter(|c| match (c.deregister_after, c.critical_since) {
            (Some(after), Some(since)) => c.status == CheckStatus::Critical && since + after <= now,
            _ => false,
        })
        .map(|c| c.service_id.clone())
        .collect();
    for sid in doomed {
        tracing::debug!(service = %sid, "consul-dev: reaping critical service");
        let removed = shared.write(|s| s.remove_service(&node, &sid));
        for cid in removed.unwrap_or_default() {
            shared.set_runner((node.clone(), cid), None);
        }
    }
}

/// Starts (or restarts) the runner of an HTTP, gRPC, TCP or script check.
pub(crate) fn start_runner(shared: &Arc<Shared>, check: &Check) {
    let key = (check.node.clone(), check.id.clone());
    let interval = check
        .interval
        .unwrap_or(Duration::from_secs(10))
        .max(Duration::from_millis(10));
    let default_timeout = match check.kind {
        CheckKind::Script(_) => SCRIPT_TIMEOUT,
        _ => DEFAULT_TIMEOUT,
    };
    let timeout = check.timeout.unwrap_or(default_timeout);
    let probe = match &check.kind {
        CheckKind::Http { .. } | CheckKind::Grpc { .. } | CheckKind::Tcp(_) => check.kind.clone(),
        // Only registered when the agent enables script checks.
        CheckKind::Script(_) => check.kind.clone(),
        _ => {
            shared.set_runner(key, None);
            return;
        }
    };
    let weak = Arc::downgrade(shared);
    let task = tokio::spawn(run_check(weak, key.clone(), probe, interval, timeout));
    shared.set_runner(key, Some(task.abort_handle()));
}

async fn run_check(
    shared: Weak<Shared>,
    key: (String, String),
    probe: CheckKind,
    interval: Duration,
    timeout: Duration,
) {
    loop {
        let (status, output) = crate::checks::probe::run(&probe, timeout).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.write(|s| s.set_check_status(&key.0, &key.1, status, &output));
        drop(shared);
        tokio::time::sleep(interval).await;
    }
}

/// Consul's default `check_output_max_size`.
const ALIAS_OUTPUT_MAX: usize = 4096;

/// Keeps alias checks in step with what they alias (`CheckAlias`): after every
/// change to the state, each alias check takes the worst status of the aliased
/// service's checks (and, for a local alias, the agent's node checks), passing
/// when there are none, critical when the service is not there.
pub(crate) async fn alias_loop(shared: Arc<Shared>) {
    let mut changed = shared.changed.subscribe();
    loop {
        changed.borrow_and_update();
        update_aliases(&shared);
        if changed.changed().await.is_err() {
            return;
        }
    }
}

fn update_aliases(shared: &Shared) {
    let updates: Vec<(String, String, CheckStatus, String)> = {
        let store = shared.store();
        store
            .checks
            .values()
            .filter_map(|c| match &c.kind {
                CheckKind::Alias { service, node } => {
                    let (status, mut output) = alias_status(&store, c, service, node);
                    // Outputs quote outputs: two aliases of each other settle once
                    // theirs reach the agent's 4 KiB output limit.
                    if output.len() > ALIAS_OUTPUT_MAX {
                        let mut end = ALIAS_OUTPUT_MAX;
                        while !output.is_char_boundary(end) {
                            end -= 1;
                        }
                        output.truncate(end);
                    }
                    let changed = status != c.status || output != c.output;
                    changed.then(|| (c.node.clone(), c.id.clone(), status, output))
                }
                _ => None,
            })
            .collect()
    };
    if updates.is_empty() {
        return;
    }
    shared.write(|s| {
        for (node, id, status, output) in &updates {
            s.set_check_status(node, id, *status, output);
        }
    });
}

/// `CheckAlias.processChecks` over the checks of the aliased node.
fn alias_status(
    store: &crate::store::Store,
    alias: &Check,
    service: &str,
    node: &str,
) -> (CheckStatus, String) {
    let local = node.is_empty();
    let target = if local { alias.node.as_str() } else { node };
    let mut status = CheckStatus::Passing;
    let mut output = "No checks found.".to_owned();
    let mut found = false;
    let candidates = store.checks.values().filter(|c| {
        c.node == target && c.id != alias.id && !(local && c.id == crate::shared::SERF_CHECK)
    });
    for c in candidates {
        let matches = !service.is_empty() && c.service_id == service;
        if !c.service_id.is_empty() && !matches {
            continue;
        }
        found |= matches;
        match c.status {
            CheckStatus::Critical | CheckStatus::Warning => {
                status = c.status;
                output = format!("Aliased check {:?} failing: {}", c.name, c.output);
                if c.status == CheckStatus::Critical {
                    break;
                }
            }
            CheckStatus::Passing if status == CheckStatus::Passing => {
                output = "All checks passing.".to_owned();
            }
            CheckStatus::Passing => {}
        }
    }
    let exists = service.is_empty()
        || store
            .services
            .contains_key(&(target.to_owned(), service.to_owned()));
    if !found && !exists {
        return (
            CheckStatus::Critical,
            format!("Service {service} could not be found on node {node}"),
        );
    }
    (status, output)
}
