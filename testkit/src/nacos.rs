//! A real Nacos-compatible server (`rnacos`) on loopback for tests.

use std::fmt;
use std::io;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::process::Process;
use crate::error::{Error, Result};

const INSTALL_HINT: &str = "install it with `cargo install rnacos --locked` (about 10 minutes \
                            to build) or run scripts/test.sh, which does";

/// One `rnacos` server started from `PATH` on free loopback ports (HTTP, gRPC = HTTP +
/// 1000 as Nacos clients expect, console) with a temporary data directory. On drop,
/// SIGKILL is sent to its PID and its directory is removed.
pub struct NacosServer {
    env: Vec<(String, String)>,
    http_port: u16,
    console_port: u16,
    process: Process,
}

// === impl NacosServer ===

impl NacosServer {
    /// Starts the server and waits until its HTTP and gRPC ports answer.
    ///
    /// # Errors
    ///
    /// A configuration error when `rnacos` is not on `PATH` (the message says how to
    /// install it), a timeout when it does not answer within 20 s.
    pub async fn start() -> Result<NacosServer> {
        NacosServer::start_with_env(&[]).await
    }

    /// Starts the server with extra `RNACOS_*` settings, such as
    /// `RNACOS_NAMING_HEALTH_TIMEOUT_SECOND` (rnacos adds 3 s to it) to see instances
    /// registered over HTTP turn unhealthy sooner.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn start_with_env(env: &[(&str, &str)]) -> Result<NacosServer> {
        let (http_port, console_port) = free_ports()?;
        let mut server = NacosServer {
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            http_port,
            console_port,
            process: Process::new("rnacos", "nacos", http_port, INSTALL_HINT)?,
        };
        server.spawn()?;
        server.wait_ready().await?;
        Ok(server)
    }

    /// The address for clients, `nacos://127.0.0.1:<http port>`.
    pub fn url(&self) -> String {
        format!("nacos://127.0.0.1:{}", self.http_port)
    }

    /// The HTTP (open API) port; gRPC listens on this + 1000.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// A directory inside the server's temporary directory, for a client's cache.
    pub fn scratch_dir(&self, name: &str) -> PathBuf {
        self.process.dir().join(name)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kills the process with SIGKILL and waits for it to exit. Its data directory
    /// stays for [`restart`](Self::restart); ephemeral instances, kept in memory, are lost.
    pub async fn kill(&mut self) {
        self.process.kill().await;
    }

    /// Starts the process again on the same ports and data directory (kills it first
    /// if running) and waits until it answers.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn restart(&mut self) -> Result<()> {
        self.kill().await;
        self.spawn()?;
        self.wait_ready().await
    }

    /// Sends one request to the Nacos open API, form-encoding `params` into the query,
    /// as a Java or Go service without the gRPC client would (for example `POST
    /// /nacos/v1/ns/instance`). Returns the status code and the body.
    ///
    /// # Errors
    ///
    /// A transport error when the server cannot be reached.
    pub async fn open_api(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<(u16, String)> {
        open_api(self.http_port, method, path, params).await
    }

    fn spawn(&mut self) -> Result<()> {
        let (http, console) = (self.http_port, self.console_port);
        let dir = self.process.dir().to_owned();
        let env = &self.env;
        self.process.spawn(|command| {
            command
                .current_dir(&dir)
                .env("RNACOS_HTTP_PORT", http.to_string())
                .env("RNACOS_GRPC_PORT", (http + 1000).to_string())
                .env("RNACOS_HTTP_CONSOLE_PORT", console.to_string())
                .env("RNACOS_SDK_HOST", "127.0.0.1")
                .env("RNACOS_CONSOLE_HOST", "127.0.0.1")
                .env("RNACOS_DATA_DIR", dir.join("data"))
                .env("RNACOS_ENABLE_METRICS", "false")
                .env("RUST_LOG", "warn")
                .envs(env.iter().map(|(k, v)| (k, v)));
        })
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let (port, grpc_port) = (self.http_port, self.http_port + 1000);
        let ready = || async move {
            matches!(open_api(port, "GET", "/health", &[]).await, Ok((200, _)))
                && tokio::net::TcpStream::connect(("127.0.0.1", grpc_port))
                    .await
                    .is_ok()
        };
        self.process.wait_started(ready).await
    }
}

impl fmt::Debug for NacosServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NacosServer")
            .field("url", &self.url())
            .field("pid", &self.pid())
            .finish()
    }
}

/// One open-API request to the server on `port` (see [`NacosServer::open_api`]).
async fn open_api(
    port: u16,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
) -> Result<(u16, String)> {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let request = format!(
        "{method} {path}?{} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
        query.join("&")
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        io::Result::Ok(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| Error::timeout(format!("nacos open API {method} {path}")))?
        .map_err(|e| Error::transport(format!("nacos open API {method} {path}"), e))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::decode("nacos open API answer", head.to_owned()))?;
    Ok((status, body.to_owned()))
}

/// A free HTTP port whose + 1000 is free too, and a free console port.
fn free_ports() -> Result<(u16, u16)> {
    let no_port = |e: io::Error| Error::config("no free loopback port").with_source(e);
    for _ in 0..100 {
        let http = TcpListener::bind("127.0.0.1:0").map_err(no_port)?;
        let port = http.local_addr().map_err(no_port)?.port();
        let Some(grpc_port) = port.checked_add(1000) else {
            continue;
        };
        let Ok(_grpc) = TcpListener::bind(("127.0.0.1", grpc_port)) else {
            continue;
        };
        let console = TcpListener::bind("127.0.0.1:0").map_err(no_port)?;
        return Ok((port, console.local_addr().map_err(no_port)?.port()));
    }
    Err(Error::config("no free pair of loopback ports 1000 apart"))
}

/// Percent-encodes a query component.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_components_are_encoded() {
        assert_eq!(encode(r#"{"a":"b c"}"#), "%7B%22a%22%3A%22b%20c%22%7D");
        assert_eq!(encode("DEFAULT_GROUP@@echo"), "DEFAULT_GROUP%40%40echo");
    }
}
