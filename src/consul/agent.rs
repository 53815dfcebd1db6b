//! The agent endpoints registration needs: register, deregister, TTL check updates and
//! maintenance mode.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Method;

use super::client::{ApiRequest, Client};
use crate::error::{Error, Result};

/// The status a TTL check reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckStatus {
    Passing,
    #[allow(dead_code)]
    Warning,
    Critical,
}

impl CheckStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }
}

// === impl Client ===

impl Client {
    /// `GET /v1/status/leader`: whether the agent answers (the leader's address may be
    /// empty while the cluster has none).
    pub(crate) async fn status_leader(&self) -> Result<()> {
        let req = ApiRequest::new(Method::GET, &["v1", "status", "leader"]);
        let answer = self.call(req).await?;
        serde_json::from_slice::<String>(&answer.body)
            .map(drop)
            .map_err(|e| Error::decode("the agent's /v1/status/leader answer", e))
    }

    /// `PUT /v1/agent/service/register` with a JSON `ServiceDefinition`.
    pub(crate) async fn agent_register(&self, body: Bytes) -> Result<()> {
        let mut req = ApiRequest::new(Method::PUT, &["v1", "agent", "service", "register"]);
        req.body = Some(body);
        self.call(req).await.map(drop)
    }

    /// `PUT /v1/agent/service/deregister/:service_id`.
    pub(crate) async fn agent_deregister(&self, service_id: &str) -> Result<()> {
        let req = ApiRequest::new(
            Method::PUT,
            &["v1", "agent", "service", "deregister", service_id],
        );
        self.call(req).await.map(drop)
    }

    /// `PUT /v1/agent/check/update/:check_id` with `{"Status": …, "Output": …}`;
    /// resets the TTL clock.
    pub(crate) async fn agent_check_update(
        &self,
        check_id: &str,
        status: CheckStatus,
        output: &str,
    ) -> Result<()> {
        let body = serde_json::json!({ "Status": status.as_str(), "Output": output });
        let req = ApiRequest::new(Method::PUT, &["v1", "agent", "check", "update", check_id])
            .json_body(body.to_string().into_bytes());
        self.call(req).await.map(drop)
    }

    /// `PUT /v1/agent/check/pass/:check_id?note=…`.
    #[allow(dead_code)]
    pub(crate) async fn agent_check_pass(&self, check_id: &str, note: &str) -> Result<()> {
        self.check_verb("pass", check_id, note).await
    }

    /// `PUT /v1/agent/check/fail/:check_id?note=…` (status critical).
    #[allow(dead_code)]
    pub(crate) async fn agent_check_fail(&self, check_id: &str, note: &str) -> Result<()> {
        self.check_verb("fail", check_id, note).await
    }

    async fn check_verb(&self, verb: &str, check_id: &str, note: &str) -> Result<()> {
        let mut req = ApiRequest::new(Method::PUT, &["v1", "agent", "check", verb, check_id]);
        if !note.is_empty() {
            req = req.query("note", note);
        }
        self.call(req).await.map(drop)
    }

    /// `PUT /v1/agent/service/maintenance/:service_id?enable=…&reason=…`.
    #[allow(dead_code)]
    pub(crate) async fn agent_maintenance(
        &self,
        service_id: &str,
        enable: bool,
        reason: &str,
    ) -> Result<()> {
        let mut req = ApiRequest::new(
            Method::PUT,
            &["v1", "agent", "service", "maintenance", service_id],
        )
        .query("enable", enable.to_string());
        if !reason.is_empty() {
            req = req.query("reason", reason);
        }
        self.call(req).await.map(drop)
    }
}

/// The agent calls the heartbeat and the handle make, as a trait so that their timer
/// logic can be tested against a mock under tokio's paused clock.
pub(crate) trait Agent: Send + Sync + 'static {
    fn register(&self, body: Bytes) -> BoxFuture<'_, Result<()>>;
    fn update_ttl<'a>(
        &'a self,
        check_id: &'a str,
        status: CheckStatus,
        output: &'a str,
    ) -> BoxFuture<'a, Result<()>>;
    fn deregister<'a>(&'a self, service_id: &'a str) -> BoxFuture<'a, Result<()>>;
}

impl Agent for Client {
    fn register(&self, body: Bytes) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.agent_register(body))
    }

    fn update_ttl<'a>(
        &'a self,
        check_id: &'a str,
        status: CheckStatus,
        output: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.agent_check_update(check_id, status, output))
    }

    fn deregister<'a>(&'a self, service_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.agent_deregister(service_id))
    }
}
