//! The `consul-dev` binary: announces its address, serves, exits 0 on SIGTERM.
#![cfg(feature = "cli")]

mod common;
mod support;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_consul-dev");

#[tokio::test]
async fn serves_until_sigterm_and_exits_zero() {
    support::trace_init();
    let mut child = Command::new(BIN)
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--node-name",
            "node7",
            "--datacenter",
            "dc3",
            // Consul's single-dash spelling.
            "-enable-script-checks",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("announces itself")
        .unwrap()
        .expect("a line");
    let url = line
        .strip_prefix("consul-dev listening on ")
        .expect("announcement format")
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let http = common::client();
    let body = http
        .get(format!("{url}/v1/agent/self"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let me: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(me["Config"]["NodeName"], "node7");
    assert_eq!(me["Config"]["Datacenter"], "dc3");
    assert_eq!(me["DebugConfig"]["EnableRemoteScriptChecks"], true);

    let pid = child.id().expect("running").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn rejects_unknown_flags() {
    let out = Command::new(BIN)
        .arg("--bogus")
        .arg("x")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown flag --bogus"));
}

#[tokio::test]
async fn exits_zero_after_agent_leave() {
    let mut child = Command::new(BIN)
        .args(["--http-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("announces itself")
        .unwrap()
        .expect("a line");
    let url = line
        .strip_prefix("consul-dev listening on ")
        .expect("announcement format")
        .to_owned();
    let resp = common::client()
        .put(format!("{url}/v1/agent/leave"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits after leaving")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
