//! The same behaviours against `ConsulDev`, the crate's in-process Consul-compatible
//! registry: services registered through the agent API with TTL checks, health
//! flipped by check status, faults injected through its handle.

use serde_json::json;
use tonic_discovery::consul::Client;
use tonic_discovery::testkit::{ConsulDev, Fault, FaultRule};

use super::*;

struct Dev {
    dev: ConsulDev,
    http: reqwest::Client,
}

impl Dev {
    async fn start() -> Self {
        Self::with_token(None).await
    }

    async fn with_token(token: Option<&str>) -> Self {
        #[cfg(feature = "tls-ring")]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dev = ConsulDev::builder()
            .acl_token(token.map(str::to_owned))
            .start()
            .await
            .unwrap();
        Dev {
            dev,
            http: reqwest::Client::new(),
        }
    }

    fn client(&self, token: Option<&str>) -> Client {
        let b = Client::builder(self.dev.url());
        let b = match token {
            Some(t) => b.token(t),
            None => b,
        };
        b.build().unwrap()
    }

    async fn put(&self, path: &str, body: Option<serde_json::Value>, token: Option<&str>) {
        let mut req = self.http.put(format!("{}{path}", self.dev.url()));
        if let Some(t) = token {
            req = req.header("X-Consul-Token", t);
        }
        if let Some(body) = body {
            req = req.body(body.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "PUT {path}");
    }

    /// Registers `id` of `echo` with a passing TTL check `ttl-<id>`.
    async fn register(&self, id: &str, port: u16, tags: &[&str]) {
        self.register_as(id, port, tags, None).await;
    }

    async fn register_as(&self, id: &str, port: u16, tags: &[&str], token: Option<&str>) {
        let body = json!({
            "Name": "echo", "ID": id, "Address": "127.0.0.1", "Port": port, "Tags": tags,
            "Check": {"CheckID": format!("ttl-{id}"), "TTL": "60s", "Status": "passing"}
        });
        self.put("/v1/agent/service/register", Some(body), token)
            .await;
    }

    async fn deregister(&self, id: &str) {
        self.put(&format!("/v1/agent/service/deregister/{id}"), None, None)
            .await;
    }

    fn check(&self, id: &str, status: &str) {
        assert!(self.dev.set_check_status(&format!("ttl-{id}"), status, ""));
    }

    /// Waits until the watch's blocking read on the registry's current index has
    /// reached the registry (every answer so far plus the one in flight). For a
    /// single watch on `echo`.
    async fn caught_up(&self, d: &Discovery) {
        eventually(T, "the watch caught up", || async {
            let s = d.state();
            let requests = self.dev.request_count("/v1/health/service/echo");
            s.index() == self.dev.index() && requests == s.answers() + 1
        })
        .await;
    }
}

#[tokio::test]
async fn dev_only_passing_instances_appear_and_checks_move_them() {
    support::trace_init();
    let dev = Dev::start().await;
    dev.register("a", 7001, &["v1"]).await;
    dev.register("b", 7002, &["v1", "canary"]).await;
    dev.check("b", "warning");
    let client = dev.client(None);
    let mut all = discovery(&client, "echo");
    let mut canary = client.discovery("echo").tag("canary").wait(WAIT).build();
    assert_eq!(
        changes(&mut all, 1).await,
        ["+a@7001"],
        "warning is not passing"
    );

    dev.check("b", "passing");
    assert_eq!(changes(&mut all, 1).await, ["+b@7002"]);
    assert_eq!(changes(&mut canary, 1).await, ["+b@7002"]);
    dev.check("a", "critical");
    assert_eq!(changes(&mut all, 1).await, ["-a"]);
    dev.deregister("b").await;
    assert_eq!(changes(&mut all, 1).await, ["-b"]);
    assert_eq!(changes(&mut canary, 1).await, ["-b"]);
    let index = dev.dev.index();
    eventually(T, "the last answer is in", || async {
        all.state().index() == index
    })
    .await;
    assert!(all.state().instances().is_empty() && no_change_ready(&mut all));
}

#[tokio::test]
async fn dev_spurious_wakeups_emit_nothing() {
    support::trace_init();
    let dev = Dev::start().await;
    dev.register("a", 7001, &[]).await;
    let mut d = discovery(&dev.client(None), "echo");
    assert_eq!(changes(&mut d, 1).await, ["+a@7001"]);
    dev.caught_up(&d).await;
    let before = dev.dev.index();
    dev.dev.faults().spurious_wakeup();
    assert!(dev.dev.index() > before);
    dev.caught_up(&d).await;
    assert!(
        no_change_ready(&mut d),
        "an unchanged snapshot yields nothing"
    );
}

#[tokio::test]
async fn dev_index_reset_resyncs() {
    support::trace_init();
    let dev = Dev::start().await;
    dev.register("a", 7001, &[]).await;
    let mut d = discovery(&dev.client(None), "echo");
    assert_eq!(changes(&mut d, 1).await, ["+a@7001"]);
    dev.caught_up(&d).await;

    dev.dev.forget_all(); // an agent restarted without state…
    dev.dev.faults().reset_index(1); // …from an older snapshot
    assert_eq!(changes(&mut d, 1).await, ["-a"]);
    dev.register("b", 7002, &[]).await;
    assert_eq!(changes(&mut d, 1).await, ["+b@7002"]);
}

#[tokio::test]
async fn dev_outage_keeps_the_set_and_recovers() {
    support::trace_init();
    let dev = Dev::start().await;
    dev.register("a", 7001, &[]).await;
    let mut d = discovery(&dev.client(None), "echo");
    assert_eq!(changes(&mut d, 1).await, ["+a@7001"]);

    let faults = dev.dev.faults();
    let no_leader = faults.add(FaultRule::new(Fault::NoLeader).path_prefix("/v1/health/"));
    dev.register("b", 7002, &[]).await;
    eventually(T, "failures are counted", || async {
        d.state().consecutive_failures() >= 2
    })
    .await;
    assert!(
        d.state()
            .last_error()
            .unwrap()
            .contains("No cluster leader")
    );
    assert!(no_change_ready(&mut d), "an outage yields nothing");
    assert_eq!(ids(&d).len(), 1);

    faults.remove(no_leader);
    faults.add(
        FaultRule::new(Fault::MalformedJson)
            .path_prefix("/v1/health/")
            .times(1),
    );
    assert_eq!(changes(&mut d, 1).await, ["+b@7002"]);
    eventually(T, "the error clears", || async {
        d.state().last_error().is_none()
    })
    .await;
}

#[tokio::test]
async fn dev_acl_token_goes_in_the_header() {
    support::trace_init();
    let dev = Dev::with_token(Some("s3cr3t")).await;
    dev.register_as("a", 7001, &[], Some("s3cr3t")).await;
    let mut d = discovery(&dev.client(Some("s3cr3t")), "echo");
    assert_eq!(changes(&mut d, 1).await, ["+a@7001"]);

    let denied = discovery(&dev.client(None), "echo");
    eventually(T, "a request without token is refused", || async {
        denied
            .state()
            .last_error()
            .is_some_and(|e| e.contains("403"))
    })
    .await;
    assert!(!denied.state().is_synced());
}
