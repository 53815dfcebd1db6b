//! A three-member `etcd` cluster on loopback for failover tests.

use std::fmt;

use super::etcd::{EtcdServer, etcdctl, free_port};
use crate::error::{Error, Result};

/// A cluster of `etcd` members started from `PATH` on free loopback ports, each with
/// its own temporary data directory; every member is killed by PID on drop.
pub struct EtcdCluster {
    members: Vec<EtcdServer>,
}

// === impl EtcdCluster ===

impl EtcdCluster {
    /// Starts `size` members and waits until each answers `/health` (which needs a
    /// leader).
    ///
    /// # Errors
    ///
    /// As [`EtcdServer::start`].
    pub async fn start(size: usize) -> Result<EtcdCluster> {
        let mut members = Vec::with_capacity(size);
        for _ in 0..size {
            members.push(EtcdServer::member(free_port()?, free_port()?)?);
        }
        let cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name(), m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for member in &mut members {
            member.set_cluster(cluster.clone());
            member.spawn()?;
        }
        for member in &mut members {
            member.wait_healthy().await?;
        }
        Ok(EtcdCluster { members })
    }

    /// All client URLs, comma-separated.
    pub fn endpoints(&self) -> String {
        let urls: Vec<String> = self.members.iter().map(EtcdServer::endpoint).collect();
        urls.join(",")
    }

    /// One member, to kill, freeze or restart it.
    ///
    /// # Panics
    ///
    /// When `index` is out of range.
    pub fn member(&mut self, index: usize) -> &mut EtcdServer {
        &mut self.members[index]
    }

    /// The index of the current leader, asked of the running members.
    ///
    /// # Errors
    ///
    /// A transport error when no running member names a leader among the members.
    pub async fn leader(&self) -> Result<usize> {
        let mut ids = Vec::new();
        let mut leader = None;
        for (n, member) in self.members.iter().enumerate() {
            if member.pid().is_none() {
                continue;
            }
            let Ok(json) = member.etcdctl(&["endpoint", "status", "-w", "json"]).await else {
                continue;
            };
            let status: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
            let status = &status[0]["Status"];
            ids.push((n, status["header"]["member_id"].as_u64()));
            leader = leader.or(status["leader"].as_u64().filter(|&id| id != 0));
        }
        ids.into_iter()
            .find(|&(_, id)| id.is_some() && id == leader)
            .map(|(n, _)| n)
            .ok_or_else(|| Error::transport("no etcd member names a leader", "no leader"))
    }

    /// Runs `etcdctl` against all members and returns its standard output.
    ///
    /// # Errors
    ///
    /// As [`EtcdServer::etcdctl`].
    pub async fn etcdctl(&self, args: &[&str]) -> Result<String> {
        etcdctl(&self.endpoints(), args).await
    }
}

impl fmt::Debug for EtcdCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdCluster")
            .field("members", &self.members)
            .finish()
    }
}
