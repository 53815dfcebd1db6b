//! What the test servers started as child processes (etcd, rnacos) share: a scratch
//! directory, the child, its log, its start-up wait, and the clean-up on drop.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::error::{Error, Result};

/// How long a test server may take to answer after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A test server's process: its scratch directory and, while it runs, its child. On
/// drop, SIGKILL is sent to the child (without waiting for the exit, which tokio reaps
/// in the background) and the directory is removed.
pub(crate) struct Process {
    /// The binary, looked up on `PATH`; also the log's name.
    binary: &'static str,
    /// How to install the binary, for the error when it is missing.
    install_hint: &'static str,
    dir: PathBuf,
    child: Option<Child>,
}

impl Process {
    /// A process not started yet, with a fresh directory named after `label` and `tag`
    /// (a port, so that the directory says which server it was).
    pub(crate) fn new(
        binary: &'static str,
        label: &str,
        tag: u16,
        install_hint: &'static str,
    ) -> Result<Process> {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tonic-discovery-{label}-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::config(format!("creating the {binary} directory failed")).with_source(e)
        })?;
        Ok(Process {
            binary,
            install_hint,
            dir,
            child: None,
        })
    }

    /// The scratch directory (the data directory, logs, caches go below it).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id, while running.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Runs `binary` with what `configure` adds (arguments, environment), its output
    /// appended to `<binary>.log` in the directory.
    pub(crate) fn spawn(&mut self, configure: impl FnOnce(&mut Command)) -> Result<()> {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log())
                .map_err(|e| {
                    Error::config(format!("creating the {} log failed", self.binary)).with_source(e)
                })
        };
        let mut command = Command::new(self.binary);
        command
            .kill_on_drop(true)
            .stdin(Stdio::null())
            .stdout(open()?)
            .stderr(open()?);
        configure(&mut command);
        let child = command.spawn().map_err(|e| {
            let message = if e.kind() == io::ErrorKind::NotFound {
                format!("`{}` is not on PATH: {}", self.binary, self.install_hint)
            } else {
                format!("starting {} failed", self.binary)
            };
            Error::config(message).with_source(e)
        })?;
        self.child = Some(child);
        Ok(())
    }

    /// Polls `ready` until it holds (see [`wait_started`]).
    pub(crate) async fn wait_started<F, Fut>(&mut self, ready: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let log = self.log();
        wait_started(&mut self.child, self.binary, &log, ready).await
    }

    /// Kills the process with SIGKILL and waits for it to exit; the directory stays.
    pub(crate) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.binary))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Never blocks: the signal is sent now and the exit reaped by tokio later.
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `ready` every 20 ms until it holds; fails, with the tail of `log`, when the
/// process `name` exits first or 20 s pass.
async fn wait_started<F, Fut>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_install_it() {
        let mut process = Process::new(
            "tonic-discovery-no-such-binary",
            "missing",
            0,
            "install it with `apt-get install no-such-binary`",
        )
        .expect("a scratch directory");
        let dir = process.dir().to_owned();
        let e = process.spawn(|_| {}).unwrap_err().to_string();
        assert!(
            e.contains("`tonic-discovery-no-such-binary` is not on PATH")
                && e.contains("apt-get install no-such-binary"),
            "{e}"
        );
        drop(process);
        assert!(!dir.exists(), "the scratch directory is removed on drop");
    }
}
