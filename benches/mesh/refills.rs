//! Scenario 16, subsetting with failing refills: one client with a subset of 16 of
//! 1,000 real endpoints. Four of its home members are killed; the members the ring
//! would refill them with fail too (two refuse every connection, two answer every
//! call with `UNAVAILABLE`), so the refills that hold are the ones after those. How
//! many connections the client opens to failing members per second, against what
//! its reconnect backoff allows; how many calls fail; how often members join and
//! leave the subset.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tonic::Code;
use tonic_discovery::balance::{BalancedChannel, Coordinate, EndpointState, Subset};
use tonic_discovery::source::StaticList;
use tonic_discovery::{Backoff, InstanceKey};

use crate::common::{Config, Res, Section, wait_for};
use crate::fleet::Fleet;
use crate::load::{Event, OpenLoad, boxed};
use crate::overhead::verdict;

/// The subset size, and the home members killed.
const K: usize = 16;
const KILLED: usize = 4;
/// The client's place among `n / K` clients.
const CLIENT: u32 = 7;
/// The black hole target of scenario 14: failed calls in the window after the fault, %.
const MAX_FAILED_PCT: f64 = 0.5;

/// What a member is made to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A home member, killed at the fault.
    Killed,
    /// A first refill that refuses every connection.
    Refusing,
    /// A first refill that answers every call with `UNAVAILABLE`.
    BlackHoled,
}

/// The connects a member that keeps failing to connect may get in `window` by the
/// reconnect backoff (its shortest delays: each jittered down by at most 20%), the
/// first one included.
fn backoff_bound(backoff: &Backoff, window: Duration) -> u64 {
    let (min, max) = (backoff.min().mul_f64(0.8), backoff.max().mul_f64(0.8));
    let (mut at, mut delay, mut connects) = (Duration::ZERO, min, 1);
    while at + delay <= window {
        at += delay;
        connects += 1;
        delay = (delay * 2).min(max);
    }
    connects
}

pub async fn run(cfg: &Config) -> Res<Section> {
    let n: usize = cfg.pick(1000, 200);
    let rate = cfg.pick(1000, 500);
    let window = Duration::from_millis(cfg.pick(20_000, 8000));
    let clients = u32::try_from(n.div_ceil(K))?;
    eprintln!("  {n} endpoints, subset {K}, client {CLIENT} of {clients}, {rate} calls/s");

    let fleet = Fleet::start("refill-", n, 4)?;
    let keys: Vec<InstanceKey> = fleet
        .addrs
        .iter()
        .map(|a| StaticList::key(&a.to_string()))
        .collect();
    let index: HashMap<&InstanceKey, usize> =
        keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
    // The ring as the client sees it: its home members, then who refills them.
    let mut ring = Subset::new(Coordinate::new(CLIENT, clients)?, K);
    for key in &keys {
        ring.insert(key.clone());
    }
    let home: Vec<InstanceKey> = ring.select(|_| false).cloned().collect();
    if home.len() != K {
        return Err(format!("the client's subset holds {} members, not {K}", home.len()).into());
    }
    let killed: Vec<InstanceKey> = home[..KILLED].to_vec();
    let first: Vec<InstanceKey> = ring
        .select(|k| killed.contains(k))
        .filter(|k| !home.contains(k))
        .cloned()
        .collect();
    let mut roles: HashMap<InstanceKey, Role> = HashMap::new();
    for key in &killed {
        roles.insert(key.clone(), Role::Killed);
    }
    for (i, key) in first.iter().enumerate() {
        let role = if i < first.len() / 2 {
            Role::Refusing
        } else {
            Role::BlackHoled
        };
        roles.insert(key.clone(), role);
    }
    // The failing refills fail from the start: they are not in the subset until the
    // fault.
    for (key, role) in &roles {
        let i = index[key];
        match role {
            Role::Refusing => fleet.doors[i].refuse(true),
            Role::BlackHoled => fleet.services[i].fail_with(Some(Code::Unavailable)),
            Role::Killed => {}
        }
    }

    let backoff = Backoff::default();
    let list = StaticList::from_addrs(fleet.addrs.iter().map(ToString::to_string))?;
    let ours = BalancedChannel::builder("refills")
        .metrics_endpoints(0)
        .reconnect_backoff(backoff)
        .subset(Subset::new(Coordinate::new(CLIENT, clients)?, K))
        .build(list.discovery("refills"))?;
    let home_set: HashSet<&InstanceKey> = home.iter().collect();
    wait_for(Duration::from_secs(30), "the home subset ready", || async {
        let e = ours.endpoints();
        e.len() == K
            && e.iter()
                .all(|e| e.state() == EndpointState::Ready && home_set.contains(e.key()))
    })
    .await?;

    let load = OpenLoad::start(boxed(ours.clone()), rate, Duration::from_secs(2));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let accepted_before: HashMap<&InstanceKey, u64> = roles
        .keys()
        .map(|k| (k, fleet.doors[index[k]].accepted()))
        .collect();
    let all_before: Vec<u64> = fleet.doors.iter().map(|d| d.accepted()).collect();
    let total_before: u64 = all_before.iter().sum();
    let fault = Instant::now();
    for key in &killed {
        fleet.doors[index[key]].kill();
    }
    // The subset over time: each member joining (appearing in the channel's
    // endpoints) and leaving.
    let mut members: HashSet<InstanceKey> = home.iter().cloned().collect();
    let (mut joins, mut leaves) = (HashMap::<InstanceKey, u32>::new(), 0u32);
    let mut most = members.len();
    let end = fault + window;
    while Instant::now() < end {
        let now: HashSet<InstanceKey> = ours.endpoints().iter().map(|e| e.key().clone()).collect();
        for key in now.difference(&members) {
            *joins.entry(key.clone()).or_default() += 1;
        }
        leaves += u32::try_from(members.difference(&now).count())?;
        most = most.max(now.len());
        members = now;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let events: Vec<Event> = load.finish().await;
    let secs = window.as_secs_f64();
    let (mut sent, mut failed) = (0usize, 0usize);
    for e in events.iter().filter(|e| e.sent >= fault && e.sent < end) {
        sent += 1;
        failed += usize::from(e.outcome.is_err());
    }
    let failed_pct = 100.0 * failed as f64 / sent.max(1) as f64;

    // Connects to the members that cannot hold a connection, against the backoff.
    let bound = backoff_bound(&backoff, window);
    let mut rows = Vec::new();
    let mut failing_connects = 0;
    let mut over = 0;
    let mut sorted: Vec<(&InstanceKey, &Role)> = roles.iter().collect();
    sorted.sort_by_key(|(k, r)| (format!("{r:?}"), (*k).clone()));
    for (key, role) in sorted {
        let connects = fleet.doors[index[key]].accepted() - accepted_before[key];
        let member_joins = joins.get(key).copied().unwrap_or(0);
        if *role != Role::BlackHoled {
            failing_connects += connects;
            over += usize::from(connects > bound);
        }
        rows.push((key.id().to_owned(), *role, connects, member_joins));
    }
    let total_connects = fleet.doors.iter().map(|d| d.accepted()).sum::<u64>() - total_before;
    // The healthy members connected in the window (the refills that hold).
    let mut others = Vec::new();
    for (i, door) in fleet.doors.iter().enumerate() {
        let connects = door.accepted() - all_before[i];
        if connects > 0 && !roles.contains_key(&keys[i]) {
            let member_joins = joins.get(&keys[i]).copied().unwrap_or(0);
            others.push((keys[i].id().to_owned(), connects, member_joins));
        }
    }
    let join_count: u32 = joins.values().sum();
    let max_joins = joins.values().copied().max().unwrap_or(0);
    let healthy_refills: Vec<&InstanceKey> = members
        .iter()
        .filter(|k| !home_set.contains(k) && !roles.contains_key(*k))
        .collect();
    drop(ours);
    drop(list);

    let mut md = format!(
        "{n} endpoints (tonic Echo servers on loopback, four server runtimes), one client with \
         `Subset::new(Coordinate::new({CLIENT}, {clients}), {K})` (every member has a client's \
         worth of subset), open loop {rate} calls/s (2 s deadline). After a 2 s warm-up, \
         {KILLED} of its home members are killed (open connections reset, new ones closed at \
         once); the ring's next members, which refill them, fail too: two close every \
         connection at once, two answer every call with `UNAVAILABLE`. The members after them \
         serve. Measured over {secs:.0} s after the fault: connections each failing member \
         accepted (closed ones included), the subset as the channel holds it (read every \
         5 ms), and the calls. Backoff bound: the connects a member that never holds a \
         connection may get in {secs:.0} s by the reconnect backoff (default 100 ms doubling \
         to 10 s, delays jittered down by at most 20%), the first included.\n\n"
    );
    md.push_str("| member | role | connects | joins |\n|---|---|---|---|\n");
    for (id, role, connects, member_joins) in &rows {
        let role = match role {
            Role::Killed => "home, killed",
            Role::Refusing => "refill, refuses connections",
            Role::BlackHoled => "refill, answers UNAVAILABLE",
        };
        let _ = writeln!(md, "| {id} | {role} | {connects} | {member_joins} |");
    }
    for (id, connects, member_joins) in &others {
        let _ = writeln!(
            md,
            "| {id} | healthy refill | {connects} | {member_joins} |"
        );
    }
    let _ = writeln!(
        md,
        "\nConnects to the members that cannot hold a connection: {failing_connects} in \
         {secs:.0} s ({:.2}/s for the client; backoff bound {bound} per member, {} over it); \
         all connects, healthy refills included: {total_connects}. Subset: {join_count} joins \
         and {leaves} leaves in {secs:.0} s ({:.2} and {:.2}/s), the most joins of one member \
         {max_joins}, at most {most} members held at once, {} healthy refills held at the \
         end. Calls: {failed} of {sent} failed ({failed_pct:.2}%).",
        failing_connects as f64 / secs,
        over,
        f64::from(join_count) / secs,
        f64::from(leaves) / secs,
        healthy_refills.len(),
    );
    let _ = writeln!(
        md,
        "\nTargets: connects per failing member within the backoff bound ({}); failed calls \
         ≤ {MAX_FAILED_PCT}% ({failed_pct:.2}%, {}); no member flapping: at most one join per \
         member per backoff step (most joins of one member {max_joins}, bound {bound}: {}).",
        verdict(over == 0),
        verdict(failed_pct <= MAX_FAILED_PCT),
        verdict(u64::from(max_joins) <= bound),
    );
    let json = json!({
        "endpoints": n,
        "subset": K,
        "client": CLIENT,
        "clients": clients,
        "rate": rate,
        "seconds": secs,
        "members": rows.iter().map(|(id, role, c, j)| json!({"id": id, "role": format!("{role:?}"), "connects": c, "joins": j})).collect::<Vec<_>>(),
        "healthy_connected": others.iter().map(|(id, c, j)| json!({"id": id, "connects": c, "joins": j})).collect::<Vec<_>>(),
        "backoff_bound": bound,
        "failing_connects": failing_connects,
        "total_connects": total_connects,
        "joins": join_count,
        "leaves": leaves,
        "max_joins": max_joins,
        "most_members": most,
        "sent": sent,
        "failed": failed,
        "target_failed_pct": MAX_FAILED_PCT,
    });
    Ok(Section {
        key: "16-refills",
        json,
        markdown: md,
    })
}
