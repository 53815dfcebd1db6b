//! Scenario 18, retry storm: three servers that each fail a random half of their
//! calls with `UNAVAILABLE`, an open-loop load, and what a retry policy does to the
//! servers' load: ours without a policy, ours retrying up to 5 attempts under gRFC
//! A6's retry throttling, and the same policy without throttling (what the throttle
//! prevents). The load is counted by the servers themselves.
//!
//! # The bound
//!
//! A6's throttle holds `maxTokens` M tokens (full at the start); each failed attempt
//! with a retryable code takes 1, each successful call gives back `tokenRatio` r (up
//! to M), and a failed attempt is retried only while more than M/2 tokens are left
//! after its own. Let E = max(tokens − M/2, 0): it starts at M/2, each retry takes
//! exactly 1 from it, each success adds at most r and nothing else adds to it. So
//! over N calls with S successes the retries R ≤ M/2 + r·S ≤ M/2 + r·N, and the
//! servers together, so each of them, see at most N + R ≤ (1 + r)·N + M/2 attempts:
//! (1 + r + M/(2N)) × the offered load.

use std::fmt::Write;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tonic::Code;
use tonic_discovery::balance::{
    BalancedChannel, MethodConfig, MethodName, RetryPolicy, RetryThrottling, ServiceConfig,
};
use tonic_discovery::source::StaticList;
use tonic_discovery_testkit::TestEchoServer;

use crate::common::{self, Config, Res, Section};
use crate::load::{Chan, OpenLoad, boxed};
use crate::overhead::verdict;

const SERVERS: usize = 3;
/// Each server fails this share of its calls with `UNAVAILABLE`, each call drawn on
/// its own.
const FAIL_RATE: f64 = 0.5;
/// The retry policy (issue #23): attempts in all, and the throttle.
const MAX_ATTEMPTS: u32 = 5;
const MAX_TOKENS: u32 = 10;
const TOKEN_RATIO: f32 = 0.1;

/// [`TOKEN_RATIO`] as the throttle keeps it (three decimals), for the arithmetic and
/// the text.
fn token_ratio() -> f64 {
    (f64::from(TOKEN_RATIO) * 1000.0).round() / 1000.0
}

#[derive(Debug, Default, serde::Serialize)]
struct Run {
    name: &'static str,
    /// Calls sent from the start of the storm to the end of the load, and failed.
    calls: usize,
    failed: usize,
    failed_pct: f64,
    /// Attempts the servers received for those calls, and how many they failed.
    attempts: u64,
    failed_attempts: u64,
    attempts_per_call: f64,
    /// Attempts beyond the first of each call, and per successful call (what the
    /// throttle's token ratio let through).
    retries: f64,
    retries_per_success: f64,
    /// The channel's own count (`attempt_stats`; ours only): retries sent, and
    /// failures its policy would have retried but the throttle stopped.
    client_retries: Option<u64>,
    client_throttled: Option<u64>,
    /// Per server: attempts received over the calls sent (the offered load), the
    /// most of them, and over its even share of the calls (calls / servers).
    load: Vec<f64>,
    max_load: f64,
    even_share: Vec<f64>,
}

pub async fn run(cfg: &Config) -> Res<Section> {
    let servers = common::servers("storm", SERVERS).await?;
    let rate = cfg.pick(1000, 500);
    let (warm, dur) = (
        Duration::from_millis(cfg.pick(1000, 300)),
        Duration::from_millis(cfg.pick(10_000, 3000)),
    );
    let list = StaticList::from_addrs(servers.iter().map(|s| s.addr().to_string()))?;
    let throttling = RetryThrottling::new(MAX_TOKENS, TOKEN_RATIO);
    let contenders: [(&'static str, Option<ServiceConfig>); 4] = [
        ("tonic-balance", None),
        ("ours", Some(ServiceConfig::new())),
        (
            "ours + retries, throttled",
            Some(retrying().retry_throttling(throttling)),
        ),
        ("ours + retries, unthrottled", Some(retrying())),
    ];
    let mut runs = Vec::new();
    for (name, config) in contenders {
        let (chan, ours) = match config {
            Some(config) => {
                let channel = ours(&list, config)?;
                (boxed(channel.clone()), Some(channel))
            }
            None => (common::tonic_list(&servers)?, None),
        };
        let run = measure(&servers, chan, ours.as_ref(), rate, warm, dur).await;
        eprintln!(
            "  {name:<28} {} calls, {:.2}% failed, {:.3} attempts per call, {:.0} retries \
             ({:.4} per success; channel: {:?} sent, {:?} throttled), busiest server {:.3}× the \
             offered load",
            run.calls,
            run.failed_pct,
            run.attempts_per_call,
            run.retries,
            run.retries_per_success,
            run.client_retries,
            run.client_throttled,
            run.max_load
        );
        runs.push(Run { name, ..run });
    }
    Ok(section(&runs, rate, dur))
}

/// Every method retried on `UNAVAILABLE`, [`MAX_ATTEMPTS`] in all, backoff 10–100 ms.
fn retrying() -> ServiceConfig {
    let policy = RetryPolicy::new(MAX_ATTEMPTS, [Code::Unavailable]).backoff(
        Duration::from_millis(10),
        Duration::from_millis(100),
        2.0,
    );
    ServiceConfig::new().method(MethodConfig::new([MethodName::all()]).retry(policy))
}

/// Ours over the servers with `config`'s policies.
fn ours(list: &StaticList, config: ServiceConfig) -> Res<BalancedChannel> {
    Ok(BalancedChannel::builder("storm")
        .metrics_endpoints(0)
        .service_config(config)
        .build(list.discovery("storm"))?)
}

/// A warm-up with healthy servers, then the storm for `dur`, counted until the last
/// call is answered (the servers fail until then, so every retry of a call sent in
/// the storm is counted, and none from before it: nothing failed before).
async fn measure(
    servers: &[TestEchoServer],
    chan: Chan,
    ours: Option<&BalancedChannel>,
    rate: u32,
    warm: Duration,
    dur: Duration,
) -> Run {
    let counts = |f: fn(&TestEchoServer) -> u64| servers.iter().map(f).collect::<Vec<u64>>();
    let received = |s: &TestEchoServer| s.service().received();
    let failed = |s: &TestEchoServer| s.service().failed();
    let load = OpenLoad::start(chan, rate, Duration::from_secs(2));
    tokio::time::sleep(warm).await;
    let (before, failed_before) = (counts(received), counts(failed));
    let stats_before = ours.map(BalancedChannel::attempt_stats);
    let start = Instant::now();
    servers
        .iter()
        .for_each(|s| s.service().set_fail_rate(FAIL_RATE));
    tokio::time::sleep(dur).await;
    let events = load.finish().await;
    let (after, failed_after) = (counts(received), counts(failed));
    let stats = ours.map(BalancedChannel::attempt_stats);
    servers.iter().for_each(|s| s.service().set_fail_rate(0.0));

    let calls: Vec<_> = events.iter().filter(|e| e.sent >= start).collect();
    let ok = calls.iter().filter(|e| e.outcome.is_ok()).count();
    let per_server: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let attempts: u64 = per_server.iter().sum();
    let n = calls.len().max(1) as f64;
    let load: Vec<f64> = per_server.iter().map(|a| *a as f64 / n).collect();
    let retries = attempts as f64 - calls.len() as f64;
    Run {
        calls: calls.len(),
        failed: calls.len() - ok,
        failed_pct: 100.0 * (calls.len() - ok) as f64 / n,
        attempts,
        failed_attempts: failed_after.iter().sum::<u64>() - failed_before.iter().sum::<u64>(),
        attempts_per_call: attempts as f64 / n,
        retries,
        retries_per_success: retries / ok.max(1) as f64,
        client_retries: stats
            .zip(stats_before)
            .map(|(a, b)| a.retries() - b.retries()),
        client_throttled: (stats.zip(stats_before))
            .map(|(a, b)| a.retries_throttled() - b.retries_throttled()),
        max_load: load.iter().copied().fold(0.0, f64::max),
        even_share: load.iter().map(|l| l * SERVERS as f64).collect(),
        load,
        ..Run::default()
    }
}

/// The A6 bounds for `r`'s calls: at most M/2 + r·S retries; at most
/// 1 + r + M/(2N) attempts per call, so no server above that × the offered load.
fn bounds(r: &Run) -> (f64, f64) {
    let (m, ratio) = (f64::from(MAX_TOKENS), token_ratio());
    let successes = (r.calls - r.failed) as f64;
    let retries = m / 2.0 + ratio * successes;
    let load = 1.0 + ratio + m / (2.0 * r.calls.max(1) as f64);
    (retries, load)
}

fn section(runs: &[Run], rate: u32, dur: Duration) -> Section {
    let mut md = format!(
        "{SERVERS} servers; after a 1 s warm-up (0.3 s with `--quick`) each fails a random \
         {:.0}% of its calls with `UNAVAILABLE` (drawn per call, as a trailers-only response), \
         for {:.0} s of open-loop load at {rate} calls/s (2 s deadline), counted until the last \
         call is answered. tonic-balance = `Channel::balance_list` over the servers (no retries); \
         ours = `BalancedChannel` over the servers (defaults, no policy); \
         ours + retries = the same with a gRFC A6 retry policy for every method \
         ({MAX_ATTEMPTS} attempts in all on `UNAVAILABLE`, backoff 10–100 ms), throttled \
         (`retryThrottling` {{maxTokens {MAX_TOKENS}, tokenRatio {}}}) or not. Attempts \
         are counted by the servers (every call they received, failed or not): attempts per \
         call = their sum over the calls sent; retries = attempts − calls (± a call in flight as \
         the storm starts; the channel's own \
         count, `BalancedChannel::attempt_stats`, beside it with the failures the throttle kept \
         from a retry); a server's load = \
         the attempts it received over the calls sent (the offered load), and over its even \
         share of them (calls / {SERVERS}).\n\n",
        FAIL_RATE * 100.0,
        dur.as_secs_f64(),
        token_ratio(),
    );
    md.push_str(
        "| contender | calls | failed % | attempts per call | retries | retries sent / throttled \
         (channel) | retries per success (token ratio at work) | busiest server × offered load \
         | per server × even share |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        let even: Vec<String> = r.even_share.iter().map(|l| format!("{l:.2}")).collect();
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.3} | {:.0} | {} | {:.4} | {:.3} | {} |",
            r.name,
            r.calls,
            r.failed_pct,
            r.attempts_per_call,
            r.retries,
            r.client_retries
                .zip(r.client_throttled)
                .map_or_else(|| "–".to_owned(), |(sent, held)| format!("{sent} / {held}")),
            r.retries_per_success,
            r.max_load,
            even.join(" / "),
        );
    }
    md.push_str(&bound_text());
    md.push_str(&verdicts(runs));
    md.push_str(&skew_note(runs));
    Section {
        key: "18-retry-storm",
        json: json!({
            "servers": SERVERS,
            "fail_rate": FAIL_RATE,
            "rate": rate,
            "storm_s": dur.as_secs_f64(),
            "max_attempts": MAX_ATTEMPTS,
            "max_tokens": MAX_TOKENS,
            "token_ratio": token_ratio(),
            "runs": runs,
        }),
        markdown: md,
    }
}

/// The verdicts on the throttled contender, with the unthrottled one against the same
/// bounds for contrast.
fn verdicts(runs: &[Run]) -> String {
    let find = |suffix: &str| runs.iter().find(|r| r.name.ends_with(suffix));
    let Some(r) = find(", throttled") else {
        return String::new();
    };
    let (max_retries, max_load) = bounds(r);
    let mut md = format!(
        "\nTargets, throttled: retries bounded by the throttling, at most M/2 + r·S = \
         {max_retries:.0} — {:.0} ({}), {:.3} attempts per call against at most 1 + r + M/(2N) = \
         {max_load:.4} ({}); no server above {max_load:.4}× the offered load — busiest {:.3}× \
         ({}).",
        r.retries,
        verdict(r.retries <= max_retries),
        r.attempts_per_call,
        verdict(r.attempts_per_call <= max_load),
        r.max_load,
        verdict(r.max_load <= max_load),
    );
    if let Some(u) = find(", unthrottled") {
        let (max_retries, max_load) = bounds(u);
        let _ = write!(
            md,
            " Without throttling, against the same arithmetic: {:.0} retries (bound {max_retries:.0}), \
             {:.3} attempts per call (bound {max_load:.4}); its busiest server took {:.3}× the \
             offered load: with three servers one alone may stay under the bound even so, the \
             sum over them is what the throttle holds.",
            u.retries, u.attempts_per_call, u.max_load,
        );
    }
    md.push('\n');
    md
}

/// Why the even-share column is no verdict: ours skews a storm that hits every server
/// alike, the policy-free contender included.
fn skew_note(runs: &[Run]) -> String {
    let Some(plain) = runs.iter().find(|r| r.name == "ours") else {
        return String::new();
    };
    let busiest = plain.even_share.iter().copied().fold(0.0, f64::max);
    format!(
        "\nThe even-share column measures the balancer, not the retries: ours does not spread a \
         storm that hits every server alike evenly, policy or not — failure accrual ejects one \
         of the three (the capacity guard allows one of three) and the failure penalty steers \
         calls to whichever failed least lately; without any policy its busiest server took \
         {busiest:.2}× an even share here. So the target is read against the whole offered \
         load, which the bound holds for every server whatever the spread.\n"
    )
}

/// The bound, worked out from gRFC A6's arithmetic, and what to expect at a 50% failure
/// rate.
fn bound_text() -> String {
    let (m, r, p) = (f64::from(MAX_TOKENS), token_ratio(), FAIL_RATE);
    let unthrottled: f64 = (0..MAX_ATTEMPTS).map(|k| p.powi(k as i32)).sum();
    format!(
        "\nThe bound (gRFC A6's arithmetic): the throttle holds M = {m:.0} tokens, full at the \
         start; each failed attempt with a retryable code takes 1, each successful call gives \
         back r = {r} (up to M), and a failed attempt is retried only while more than M/2 = \
         {:.0} tokens are left after its own. The tokens above M/2 start at M/2, each retry \
         takes exactly 1 of them, each success adds at most r and nothing else adds any; so N \
         calls with S successes get at most M/2 + r·S retries, and the servers together, so \
         each of them, see at most (1 + r)·N + M/2 attempts: (1 + r + M/(2N)) × the offered \
         load, ≈ {:.2}× for a long storm (with the calls spread evenly, the same × each \
         server's share). At a {:.0}% failure rate the \
         bucket drains (each call takes {p} − {r}·{} = {:.2} tokens on average), so after about \
         M/2 − 1 = {:.0} retries at the start it stays below half and the throttled channel \
         sends hardly any: retries pay for themselves only while attempts fail less than \
         r/(1 + r) = {:.1}% of the time. Without throttling every call gets up to \
         {MAX_ATTEMPTS} attempts: 1 + p + … + p⁴ = {unthrottled:.4} per call, and p⁵ = \
         {:.3}% still fail.\n",
        m / 2.0,
        1.0 + r,
        p * 100.0,
        1.0 - p,
        p - r * (1.0 - p),
        m / 2.0 - 1.0,
        100.0 * r / (1.0 + r),
        100.0 * p.powi(MAX_ATTEMPTS as i32),
    )
}
