//! Taking the registry's HTTP API down and bringing it back on the same port with
//! its state: an agent process that died and restarted with its data directory.

use std::io;

use crate::{ConsulDev, server};

/// How long a leaving agent's HTTP server waits for answers in flight.
const LEAVE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

// === impl ConsulDev ===

impl ConsulDev {
    /// Stops serving, as an agent process that died: closes the listener (new
    /// connections are refused) and every open connection (pending blocking queries
    /// end with them, unanswered), and returns once they are closed. The state, its
    /// timers, the fault rules and the request log are kept, and the in-process
    /// controls keep working; [`ConsulDev::restart`] serves again. Does nothing when
    /// already stopped.
    pub async fn stop(&mut self) {
        if let Some(listening) = self.listening.take() {
            listening.stop().await;
        }
    }

    /// Resolves once a client has made the agent leave (`PUT /v1/agent/leave`) and
    /// the connections open then have closed: answers in flight get a second to go
    /// out, then the rest (parked blocking queries) are closed, as Consul's
    /// `ShutdownEndpoints` does. The registry is then stopped, as after
    /// [`ConsulDev::stop`]. Pends while it serves and no leave comes.
    pub async fn left(&mut self) {
        self.shared.left().cancelled().await;
        if let Some(mut listening) = self.listening.take() {
            let grace = tokio::time::timeout(LEAVE_GRACE, listening.finished()).await;
            if grace.is_err() {
                listening.stop().await;
            }
        }
    }

    /// Serves again on the same address with the state as it is now (after
    /// [`ConsulDev::stop`]; on a running registry every connection is closed first).
    ///
    /// # Errors
    /// When the address cannot be bound again, e.g. another socket took the port
    /// meanwhile; the registry then stays stopped.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.stop().await;
        let listener = server::bind(self.addr)?;
        self.listening = Some(server::Listening::start(
            listener,
            self.shared.clone(),
            self.tls.clone(),
        ));
        Ok(())
    }
}
