//! Script checks as the agent's `CheckMonitor` runs them: the arguments executed
//! directly (no shell), exit code 0 passing, 1 warning, anything else critical, the
//! output of stdout then stderr capped at 4 KiB, and the process killed at the
//! timeout (30 s by default).

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::store::model::CheckStatus;

/// Consul's `DefaultBufSize` for check output.
const OUTPUT_MAX: usize = 4096;

/// Runs `args` once.
pub(crate) async fn run(args: &[String], timeout: Duration) -> (CheckStatus, String) {
    let Some((program, rest)) = args.split_first() else {
        return (CheckStatus::Critical, String::new());
    };
    let child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A runner aborted with its check (or the agent) takes the process with it.
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            return (CheckStatus::Critical, format!("Check failed to start: {e}"));
        }
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => (
            CheckStatus::Critical,
            format!("Timed out ({}) running check", go_seconds(timeout)),
        ),
        Ok(Err(e)) => (CheckStatus::Critical, format!("Check failed: {e}")),
        Ok(Ok(out)) => {
            let status = match out.status.code() {
                Some(0) => CheckStatus::Passing,
                Some(1) => CheckStatus::Warning,
                _ => CheckStatus::Critical,
            };
            let mut text = out.stdout;
            text.extend_from_slice(&out.stderr);
            (status, capped(&text))
        }
    }
}

/// The output, or its last 4 KiB after Consul's `Captured N of M bytes` line.
fn capped(text: &[u8]) -> String {
    if text.len() <= OUTPUT_MAX {
        return String::from_utf8_lossy(text).into_owned();
    }
    let tail = &text[text.len() - OUTPUT_MAX..];
    format!(
        "Captured {OUTPUT_MAX} of {} bytes\n...\n{}",
        text.len(),
        String::from_utf8_lossy(tail)
    )
}

/// A timeout as Go prints a whole number of seconds (`30s`), else milliseconds.
fn go_seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_output_keeps_its_tail() {
        let text = vec![b'x'; OUTPUT_MAX + 10];
        let out = capped(&text);
        assert!(out.starts_with(&format!(
            "Captured {OUTPUT_MAX} of {} bytes",
            OUTPUT_MAX + 10
        )));
        assert!(out.ends_with(&"x".repeat(OUTPUT_MAX)));
        assert_eq!(capped(b"ok"), "ok");
    }
}
