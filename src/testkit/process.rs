//! What the test servers started as child processes (etcd, rnacos) share.

use std::path::Path;
use std::time::Duration;

use tokio::process::Child;

use crate::error::{Error, Result};

/// How long a test server may take to answer after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Polls `ready` every 20 ms until it holds; fails, with the tail of `log`, when the
/// process `name` exits first or 20 s pass.
pub(crate) async fn wait_started<F, Fut>(
    child: &mut Option<Child>,
    name: &str,
    log: &Path,
    mut ready: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if ready().await {
            return Ok(());
        }
        if let Some(Ok(Some(status))) = child.as_mut().map(Child::try_wait) {
            return Err(Error::config(format!(
                "{name} exited with {status}: {}",
                log_tail(log)
            )));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::timeout(format!(
                "{name} not answering after {START_TIMEOUT:?}: {}",
                log_tail(log)
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last 2,000 bytes of a log file (of a server that failed to start), or less.
pub(crate) fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let start = log.len().saturating_sub(2000);
    let start = (start..log.len())
        .find(|&i| log.is_char_boundary(i))
        .unwrap_or(0);
    log[start..].to_owned()
}
