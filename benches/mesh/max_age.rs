//! Scenario 9, max connection age: every server closes each connection gracefully
//! once it is 1 s old (an HTTP/2 GOAWAY, as grpc-go's `MaxConnectionAge` and tonic's
//! `Server::max_connection_age` do); no call should fail.

use std::fmt::Write;
use std::time::Duration;

use crate::common::{Config, Res, Section};
use crate::outcome::{self, Runs, show};
use crate::overhead::verdict;
use crate::report;
use crate::trial::{self, Fault, Plan};

const AGE: Duration = Duration::from_secs(1);

pub async fn run(cfg: &Config) -> Res<Section> {
    let after = Duration::from_millis(cfg.pick(10_000, 3000));
    let plan = Plan {
        before: Duration::ZERO,
        max_age: Some(AGE),
        ..Plan::new(cfg, "aged", Fault::Nothing, after)
    };
    let runs = trial::runs(cfg, &plan).await?;
    Ok(section(cfg, &plan, &runs))
}

fn section(cfg: &Config, plan: &Plan, runs: &[Runs]) -> Section {
    let mut md = outcome::setup(
        cfg,
        plan,
        &format!(
            "every server closing each connection once it is {:.0} s old (`max_connection_age`: \
             GOAWAY, the streams it names finish, then the close)",
            AGE.as_secs_f64()
        ),
    );
    md.push_str(&report::table(
        "contender",
        &report::by_contender(runs),
        &[
            ("requests", &|r| show(&r.requests, 0)),
            ("failed", &|r| show(&r.failed, 0)),
            ("connections accepted", &|r| show(&r.connections, 0)),
            ("p99 ms", &|r| show(&r.p99_ms, 2)),
            ("longest call ms", &|r| show(&r.longest_ms, 1)),
            ("failures per second (median)", &|r| r.per_second()),
        ],
    ));
    let ours = outcome::max(&runs[1].failed);
    let _ = writeln!(
        md,
        "\nTarget: no failed call — ours, worst run: {ours:.0} failed ({}); tonic-balance: {} failed \
         (median). Connections accepted: by the three servers over the whole trial, start-up \
         included (each connection that reached its age was replaced by one).",
        verdict(ours == 0.0),
        outcome::median(&runs[0].failed),
    );
    Section {
        key: "9-max-connection-age",
        json: outcome::json(plan, runs),
        markdown: md,
    }
}
