//! [`ConsulDevBuilder`]: the registry's configuration and start-up.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::shared::{self, Config, Shared};
use crate::{ConsulDev, checks, server};

/// A dev agent's raft apply of a KV write, rounded up to tokio's timer tick.
const DEFAULT_KV_COMMIT_LATENCY: Duration = Duration::from_millis(1);

/// Configures a [`ConsulDev`]; from [`ConsulDev::builder`].
#[must_use]
pub struct ConsulDevBuilder {
    http_addr: SocketAddr,
    cfg: Config,
    #[cfg(feature = "tls-ring")]
    tls: Option<Arc<rustls::ServerConfig>>,
}

// === impl ConsulDevBuilder ===

impl ConsulDevBuilder {
    pub(crate) fn new() -> Self {
        ConsulDevBuilder {
            http_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            cfg: Config {
                node_name: "consul-dev".to_owned(),
                node_id: shared::random_uuid(),
                cluster_id: shared::random_uuid(),
                datacenter: "dc1".to_owned(),
                acl_token: None,
                reap_interval: Duration::from_secs(30),
                min_deregister_after: Duration::from_secs(60),
                enable_script_checks: false,
                enable_local_script_checks: false,
                kv_commit_latency: DEFAULT_KV_COMMIT_LATENCY,
            },
            #[cfg(feature = "tls-ring")]
            tls: None,
        }
    }

    /// Serves HTTPS with this rustls configuration: its certificate chain, and client
    /// authentication when its verifier requires it. The ALPN protocols are replaced
    /// by `h2` and `http/1.1`, as Consul offers them. Default: plain HTTP.
    #[cfg(feature = "tls-ring")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls-ring")))]
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        let mut config = Arc::unwrap_or_clone(config);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        self.tls = Some(Arc::new(config));
        self
    }

    /// The address to listen on. Default: `127.0.0.1:0` (a free port).
    pub fn http_addr(mut self, addr: SocketAddr) -> Self {
        self.http_addr = addr;
        self
    }

    /// The agent's node name. Default: `consul-dev`.
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.cfg.node_name = name.into();
        self
    }

    /// The datacenter. Default: `dc1`.
    pub fn datacenter(mut self, dc: impl Into<String>) -> Self {
        self.cfg.datacenter = dc.into();
        self
    }

    /// A token every request must carry (`X-Consul-Token`, `Authorization: Bearer`
    /// or `?token=`); without it the answer is `403 Permission denied`, with a
    /// wrong one `403 ACL not found`. Default: none (ACLs off).
    pub fn acl_token(mut self, token: Option<String>) -> Self {
        self.cfg.acl_token = token.filter(|t| !t.is_empty());
        self
    }

    /// `-enable-script-checks`: script checks (`Args`/`ScriptArgs`) registered over
    /// the HTTP API run as processes of this one, with Consul's exit-code rules (0
    /// passing, 1 warning, else critical). Default: off, as Consul; registering a
    /// script check then answers 500 `Scripts are disabled on this agent from
    /// remote calls; …`.
    ///
    /// Any client that can reach the API can run commands as this process when this
    /// is on: keep the API on loopback.
    pub fn enable_script_checks(mut self, on: bool) -> Self {
        self.cfg.enable_script_checks = on;
        self
    }

    /// `-enable-local-script-checks`: script checks only from the agent's own
    /// configuration. The dev agent has no configuration files, so HTTP
    /// registrations of script checks are refused as with scripts off; the setting
    /// shows in `/v1/agent/self`. Default: off.
    pub fn enable_local_script_checks(mut self, on: bool) -> Self {
        self.cfg.enable_local_script_checks = on;
        self
    }

    /// How often critical services are reaped. Default: 30 s, as Consul.
    pub fn reap_interval(mut self, every: Duration) -> Self {
        self.cfg.reap_interval = every.max(Duration::from_millis(1));
        self
    }

    /// The floor `DeregisterCriticalServiceAfter` values are raised to.
    /// Default: 1 min, as Consul.
    pub fn min_deregister_critical_after(mut self, min: Duration) -> Self {
        self.cfg.min_deregister_after = min;
        self
    }

    /// How long a KV write (`PUT` or `DELETE` on `/v1/kv/`) takes before it is
    /// applied and answered, as Consul's raft apply takes time even on a dev agent.
    /// A read sent at the same moment as a write is then answered from the state
    /// before it, and a blocking read woken by one write has read the state long
    /// before the next write lands: a watch that polls while a client writes in a
    /// loop sees every state, as against Consul. Default: 1 ms; zero applies writes
    /// at once.
    pub fn kv_commit_latency(mut self, latency: Duration) -> Self {
        self.cfg.kv_commit_latency = latency;
        self
    }

    /// Binds the listener and starts serving.
    ///
    /// # Errors
    /// When the listening socket cannot be bound.
    pub async fn start(self) -> io::Result<ConsulDev> {
        let listener = server::bind(self.http_addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(self.cfg));
        shared::seed(&shared, addr);
        #[cfg(feature = "tls-ring")]
        let tls = self.tls.map(tokio_rustls::TlsAcceptor::from);
        #[cfg(not(feature = "tls-ring"))]
        let tls = server::NoTls;
        let https = server::is_tls(&tls);
        let listening = server::Listening::start(listener, shared.clone(), tls.clone());
        let tasks = vec![
            tokio::spawn(checks::ttl_loop(shared.clone())),
            tokio::spawn(checks::reap_loop(shared.clone())),
            tokio::spawn(checks::alias_loop(shared.clone())),
        ];
        Ok(ConsulDev {
            shared,
            addr,
            https,
            tls,
            listening: Some(listening),
            tasks,
        })
    }
}

impl ConsulDevBuilder {
    fn tls_enabled(&self) -> bool {
        #[cfg(feature = "tls-ring")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls-ring"))]
        false
    }
}

impl fmt::Debug for ConsulDevBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulDevBuilder")
            .field("http_addr", &self.http_addr)
            .field("cfg", &self.cfg)
            .field("tls", &self.tls_enabled())
            .finish()
    }
}
