//! Bad input from users fails with a configuration error before anything touches
//! the network. The rules themselves are tabled in `consul_register.rs` (names,
//! IDs, ports, TTLs) and `src/consul/env.rs` (`CONSUL_HTTP_ADDR`, token file); here
//! the same inputs go through the calls users make, against a listener that counts
//! the connections it accepts.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use support::eventually;
use tokio::net::{TcpListener, TcpStream};
use tonic_discovery::consul::{Client, Registration};

/// A listener that accepts and counts connections, never answering.
struct Counting {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Counting {
    async fn start() -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Counting {
            addr,
            accepted,
            task,
        }
    }

    /// How many connections clients made: opens one probe connection and waits
    /// until the listener has accepted it, so every earlier connection is counted.
    async fn client_connections(&self) -> u64 {
        let before = self.accepted.load(Ordering::SeqCst);
        let _probe = TcpStream::connect(self.addr).await.expect("probe");
        eventually(Duration::from_secs(5), "the probe is accepted", || async {
            self.accepted.load(Ordering::SeqCst) > before
        })
        .await;
        self.accepted.load(Ordering::SeqCst) - 1
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn install_crypto_provider() {
    #[cfg(feature = "tls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[tokio::test]
async fn invalid_registrations_fail_before_any_connection() {
    support::trace_init();
    install_crypto_provider();
    let agent = Counting::start().await;
    let client = Client::builder(agent.addr.to_string())
        .token("t")
        .build()
        .expect("client");
    let at = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let s = Duration::from_secs;
    let table = [
        ("empty name", Registration::new("", at(7001))),
        (
            "name with a space",
            Registration::new("echo server", at(7001)),
        ),
        (
            "name with an underscore",
            Registration::new("echo_v1", at(7001)),
        ),
        (
            "ID with a slash",
            Registration::new("echo", at(7001)).id("a/b"),
        ),
        ("empty ID", Registration::new("echo", at(7001)).id("")),
        ("port 0", Registration::new("echo", at(0))),
        (
            "TTL of 999 ms",
            Registration::new("echo", at(7001)).ttl(Duration::from_millis(999)),
        ),
        (
            "heartbeat not below the TTL",
            Registration::new("echo", at(7001))
                .ttl(s(2))
                .heartbeat_interval(s(2)),
        ),
        (
            "DeregisterCriticalServiceAfter of 30 s",
            Registration::new("echo", at(7001)).deregister_critical_after(s(30)),
        ),
    ];
    for (what, registration) in table {
        let e = client.register(registration).await.expect_err(what);
        assert!(e.is_config(), "{what}: {e:?}");
        assert!(!e.to_string().is_empty(), "{what}: a message");
    }
    assert_eq!(agent.client_connections().await, 0, "nothing was sent");
}

#[tokio::test]
async fn malformed_addresses_and_tokens_fail_at_build() {
    install_crypto_provider();
    let addresses = [
        "",
        "127.0.0.1:70000",
        "http://127.0.0.1:99999",
        "http://",
        "http://a b:8500",
        "unix:///var/run/consul.sock",
        "ftp://127.0.0.1:8500",
        "http://[::1:8500",
    ];
    for address in addresses {
        let e = Client::builder(address).build().expect_err(address);
        assert!(e.is_config(), "{address}: {e:?}");
    }

    // A token no header can carry: refused at build, without showing it.
    let e = Client::builder("127.0.0.1:8500")
        .token("s3cret\u{1}token")
        .build()
        .expect_err("control character");
    assert!(e.is_config(), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("s3cret"), "{e:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let two_lines = dir.path().join("two-lines.token");
    std::fs::write(&two_lines, "s3cret-one\ns3cret-two\n").expect("write");
    let e = (Client::builder("127.0.0.1:8500").token_file(&two_lines))
        .build()
        .expect_err("two lines");
    assert!(
        e.is_config() && e.to_string().contains("two-lines.token"),
        "{e}"
    );
    assert!(!format!("{e} {e:?}").contains("s3cret"), "{e:?}");
    // A directory is no token file.
    let e = (Client::builder("127.0.0.1:8500").token_file(dir.path()))
        .build()
        .expect_err("a directory");
    assert!(e.is_config(), "{e:?}");
}
