//! A real `etcd` server on loopback for tests.

use std::fmt;
use std::io;
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::process::Process;
use crate::error::{Error, Result};

const INSTALL_HINT: &str = "install it (Debian: apt-get install etcd-server etcd-client)";

/// One `etcd` member started from `PATH` on free loopback ports with a temporary data
/// directory. On drop, SIGKILL is sent to its PID (without waiting for the exit, which
/// tokio reaps in the background) and its directory is removed.
///
/// Elections are fast (heartbeat 25 ms, election timeout 250 ms), so etcd's minimum
/// lease TTL is 1 s.
pub struct EtcdServer {
    name: String,
    client_port: u16,
    peer_port: u16,
    cluster: String,
    process: Process,
}

// === impl EtcdServer ===

impl EtcdServer {
    /// Starts a single-member cluster and waits until it answers `/health`.
    ///
    /// # Errors
    ///
    /// A configuration error when `etcd` is not on `PATH` (the message says how to
    /// install it), a timeout when it does not become healthy within 20 s.
    pub async fn start() -> Result<EtcdServer> {
        let mut server = EtcdServer::member(free_port()?, free_port()?)?;
        server.cluster = format!("{}={}", server.name, server.peer_url());
        server.spawn()?;
        server.wait_healthy().await?;
        Ok(server)
    }

    /// A member that is not started yet; its `cluster` must be set before spawning.
    pub(crate) fn member(client_port: u16, peer_port: u16) -> Result<EtcdServer> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Ok(EtcdServer {
            name: format!("m{n}"),
            client_port,
            peer_port,
            cluster: String::new(),
            process: Process::new("etcd", "etcd", client_port, INSTALL_HINT)?,
        })
    }

    pub(crate) fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn set_cluster(&mut self, cluster: String) {
        self.cluster = cluster;
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kills the process with SIGKILL and waits for it to exit. Data stays for
    /// [`restart`](Self::restart).
    pub async fn kill(&mut self) {
        self.process.kill().await;
    }

    /// Freezes the process (SIGSTOP): connections stay open and nothing answers, as in
    /// a network partition.
    ///
    /// # Errors
    ///
    /// A closed error when etcd is not running or `kill` fails.
    pub async fn stop(&self) -> Result<()> {
        self.signal("-STOP").await
    }

    /// Resumes a frozen process (SIGCONT).
    ///
    /// # Errors
    ///
    /// As [`stop`](Self::stop).
    pub async fn cont(&self) -> Result<()> {
        self.signal("-CONT").await
    }

    /// Starts the process again on the same ports and data directory (after
    /// [`kill`](Self::kill); kills it first otherwise) and waits until it is healthy.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn restart(&mut self) -> Result<()> {
        self.kill().await;
        self.spawn()?;
        self.wait_healthy().await
    }

    /// Runs `etcdctl` against this server with `args` and returns its standard output.
    ///
    /// # Errors
    ///
    /// A configuration error when `etcdctl` is missing, a transport error when it fails.
    pub async fn etcdctl(&self, args: &[&str]) -> Result<String> {
        etcdctl(&self.endpoint(), args).await
    }

    pub(crate) fn spawn(&mut self) -> Result<()> {
        let client = self.endpoint();
        let peer = self.peer_url();
        let data = self.process.dir().join("data");
        let (name, cluster) = (&self.name, &self.cluster);
        self.process.spawn(|command| {
            command
                .args(["--name", name, "--data-dir"])
                .arg(data)
                .args([
                    "--listen-client-urls",
                    &client,
                    "--advertise-client-urls",
                    &client,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer,
                    "--initial-advertise-peer-urls",
                    &peer,
                ])
                .args(["--initial-cluster", cluster])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "tonic-discovery-test"])
                .args(["--heartbeat-interval", "25", "--election-timeout", "250"])
                .args(["--logger", "zap", "--log-level", "warn"]);
        })
    }

    pub(crate) async fn wait_healthy(&mut self) -> Result<()> {
        let port = self.client_port;
        self.process.wait_started(|| healthy(port)).await
    }

    async fn signal(&self, signal: &str) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| Error::closed("etcd is not running"))?;
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .await
            .map_err(|e| Error::config("running kill failed").with_source(e))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::closed(format!("kill {signal} {pid}: {status}")))
        }
    }
}

impl fmt::Debug for EtcdServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdServer")
            .field("endpoint", &self.endpoint())
            .field("pid", &self.pid())
            .finish()
    }
}

/// Runs `etcdctl --endpoints=<endpoints> <args>` and returns its standard output.
pub(crate) async fn etcdctl(endpoints: &str, args: &[&str]) -> Result<String> {
    let output = tokio::process::Command::new("etcdctl")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--command-timeout=5s")
        .args(args)
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            Error::config(format!("running etcdctl failed: {INSTALL_HINT}")).with_source(e)
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let message = format!("etcdctl {args:?} failed: {stderr}");
        return Err(Error::transport(message, stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub(crate) fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::config("no free loopback port").with_source(e))
}

/// Whether etcd's `/health` endpoint answers `"health":"true"`.
async fn healthy(port: u16) -> bool {
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut body = Vec::new();
        stream.read_to_end(&mut body).await?;
        io::Result::Ok(String::from_utf8_lossy(&body).contains(r#""health":"true""#))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), check).await,
        Ok(Ok(true))
    )
}
