//! The benchmark harness: our balanced channel side by side with a plain tonic
//! `Channel` and tonic's own balancer, on loopback.
//!
//! ```text
//! cargo bench --all-features --bench mesh -- [SCENARIO...] [--quick]
//! ```
//!
//! SCENARIO is a number or a name: 1 overhead, 2 propagation, 3 dead, 4 slow,
//! 5 rolling, 6 scale, 7 blackhole, 8 frozen, 9 maxage, 10 weights, 11 zones, 12 worker,
//! 13 subset, 14 fleet, 15 saturation, 16 refills, 17 tail, 18 storm;
//! none runs all. A run writes `benches/results/*.{json,md,svg}`, regenerates
//! `BENCHMARKS.md` from the saved sections and `benches/results/notes.md`, and rewrites
//! the README's summary of the benchmarks (the block between its
//! `<!-- bench-summary:start -->` and `<!-- bench-summary:end -->` lines, one bullet per
//! scenario written from its saved JSON by `report::bullet`); so the two never disagree.
//! `--quick` runs every scenario small (about three minutes in all) and writes only
//! under `target/bench/quick/`, its summary to `target/bench/quick/summary.md` (the
//! README is left alone). `--report-only` runs nothing and regenerates `BENCHMARKS.md`
//! and the README's summary from the saved results.
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

#[path = "mesh/blackhole.rs"]
mod blackhole;
#[path = "mesh/chart.rs"]
mod chart;
#[path = "mesh/common.rs"]
mod common;
#[path = "mesh/dead.rs"]
mod dead;
#[path = "mesh/fleet.rs"]
mod fleet;
#[path = "mesh/frozen.rs"]
mod frozen;
#[path = "mesh/load.rs"]
mod load;
#[path = "mesh/max_age.rs"]
mod max_age;
#[path = "mesh/outcome.rs"]
mod outcome;
#[path = "mesh/overhead.rs"]
mod overhead;
#[path = "mesh/policy.rs"]
mod policy;
#[path = "mesh/propagation.rs"]
mod propagation;
#[cfg(feature = "etcd")]
#[path = "mesh/propagation_etcd.rs"]
mod propagation_etcd;
#[cfg(feature = "nacos")]
#[path = "mesh/propagation_nacos.rs"]
mod propagation_nacos;
#[path = "mesh/refills.rs"]
mod refills;
#[path = "mesh/report.rs"]
mod report;
#[path = "mesh/rolling.rs"]
mod rolling;
#[path = "mesh/saturation.rs"]
mod saturation;
#[path = "mesh/scale.rs"]
mod scale;
#[path = "mesh/scale_big.rs"]
mod scale_big;
#[path = "mesh/slow.rs"]
mod slow;
#[path = "mesh/stats.rs"]
mod stats;
#[path = "mesh/storm.rs"]
mod storm;
#[path = "mesh/subset.rs"]
mod subset;
#[path = "mesh/tail.rs"]
mod tail;
#[path = "mesh/trial.rs"]
mod trial;
#[path = "mesh/worker.rs"]
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use common::{Config, Res, Section};
use tokio::time::Instant;

/// Counts the heap in use, for the memory a discovery holds (scenario 6). One relaxed
/// atomic add per allocation and free, paid alike by every contender.
#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

const NAMES: [(&str, &str); 18] = [
    ("1", "overhead"),
    ("2", "propagation"),
    ("3", "dead"),
    ("4", "slow"),
    ("5", "rolling"),
    ("6", "scale"),
    ("7", "blackhole"),
    ("8", "frozen"),
    ("9", "maxage"),
    ("10", "weights"),
    ("11", "zones"),
    ("12", "worker"),
    ("13", "subset"),
    ("14", "fleet"),
    ("15", "saturation"),
    ("16", "refills"),
    ("17", "tail"),
    ("18", "storm"),
];

const COMMAND: &str = "cargo bench --all-features --bench mesh";

/// The benchmark harness: our balanced channel beside a plain tonic `Channel` and
/// tonic's own balancer, on loopback. A run writes `benches/results/*` and regenerates
/// `BENCHMARKS.md` and the README's summary of the benchmarks.
#[derive(Debug, clap::Parser)]
#[command(
    name = "mesh",
    about = "The benchmark harness: our balanced channel beside a plain tonic Channel and tonic's balancer, on loopback"
)]
struct Cli {
    /// Scenarios to run, by number or name (1 overhead, 2 propagation, 3 dead, 4 slow,
    /// 5 rolling, 6 scale, 7 blackhole, 8 frozen, 9 maxage, 10 weights, 11 zones,
    /// 12 worker, 13 subset, 14 fleet, 15 saturation, 16 refills, 17 tail, 18 storm);
    /// none runs all.
    #[arg(value_parser = scenario_index)]
    scenarios: Vec<usize>,
    /// Runs every scenario small and writes only under `target/bench/quick/`.
    #[arg(long)]
    quick: bool,
    /// Runs nothing; regenerates `BENCHMARKS.md` and the README's summary from the saved
    /// results.
    #[arg(long)]
    report_only: bool,
    /// Added by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn scenario_index(arg: &str) -> Result<usize, String> {
    NAMES
        .iter()
        .position(|(n, name)| arg == *n || arg == *name)
        .ok_or_else(|| format!("not a scenario; scenarios: {NAMES:?}"))
}

fn main() -> ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    // Logs on standard error when asked for (`RUST_LOG=tonic_discovery=debug`).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let (quick, report_only) = (cli.quick, cli.report_only);
    let mut picked = cli.scenarios;
    if report_only {
        picked.clear();
    } else if picked.is_empty() {
        picked = (0..NAMES.len()).collect();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run(quick, &picked)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(quick: bool, picked: &[usize]) -> Res<()> {
    #[cfg(feature = "tls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = if quick {
        root.join("target/bench/quick")
    } else {
        root.join("benches/results")
    };
    std::fs::create_dir_all(&out)?;
    let cfg = Config { quick, out };
    for &i in picked {
        let (l0, t0) = (common::loadavg(), Instant::now());
        eprintln!("== scenario {} ({})", NAMES[i].0, NAMES[i].1);
        let section = scenario(i, &cfg).await?;
        let secs = t0.elapsed().as_secs_f64();
        let header = format!(
            "Run {} UTC, {secs:.0} s, `{COMMAND} -- {}{}`; load average (1 min) {l0:.2} before, {:.2} after.",
            utc_now(),
            NAMES[i].0,
            if quick { " --quick" } else { "" },
            common::loadavg()
        );
        report::save(&cfg.out, &section, &header)?;
        eprintln!("   done in {secs:.1} s");
    }
    let target = if quick {
        cfg.out.join("BENCHMARKS.md")
    } else {
        root.join("BENCHMARKS.md")
    };
    report::assemble(&cfg.out, &target, &machine(), COMMAND)?;
    eprintln!("wrote {}", target.display());
    if quick {
        // A run this small would only mislead in the README.
        let summary = cfg.out.join("summary.md");
        std::fs::write(&summary, report::summary(&cfg.out, COMMAND) + "\n")?;
        eprintln!(
            "wrote {} (the README's summary block for this run)",
            summary.display()
        );
    } else {
        let readme = root.join("README.md");
        report::write_summary(&cfg.out, &readme, COMMAND)?;
        eprintln!("wrote the summary in {}", readme.display());
    }
    Ok(())
}

async fn scenario(i: usize, cfg: &Config) -> Res<Section> {
    match i {
        0 => overhead::run(cfg).await,
        1 => propagation::run(cfg).await,
        2 => dead::run(cfg).await,
        3 => slow::run(cfg).await,
        4 => rolling::run(cfg).await,
        5 => scale::run(cfg).await,
        6 => blackhole::run(cfg).await,
        7 => frozen::run(cfg).await,
        8 => max_age::run(cfg).await,
        9 => policy::weights(cfg).await,
        10 => policy::zones(cfg).await,
        11 => worker::run(cfg).await,
        12 => subset::run(cfg).await,
        13 => fleet::run(cfg).await,
        14 => saturation::run(cfg).await,
        15 => refills::run(cfg).await,
        16 => tail::run(cfg).await,
        _ => storm::run(cfg).await,
    }
}

/// CPU model, cores, memory, kernel and compiler.
fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    let kernel = read("/proc/sys/kernel/osrelease");
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cores} vCPU {cpu}, {:.0} GiB RAM, Linux {}, {rustc}, tonic 0.14 / tower 0.5 / tokio 1 (versions in Cargo.lock).",
        mem_kib as f64 / 1048576.0,
        kernel.trim()
    )
}

/// `YYYY-MM-DD HH:MM` in UTC.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}
