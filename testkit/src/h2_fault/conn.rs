//! One connection of the fault server: streams taken up, refused, or refused by GOAWAY.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use h2::server::{Connection, SendResponse};
use h2::{Reason, RecvStream};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::Shared;
use super::gate::Gated;

type Conn = Connection<Gated, Bytes>;

/// How the connection's stream loop ended.
enum Ended {
    /// The client closed it, or a connection error did.
    Closed,
    /// A stream was held back and every stream taken up is answered.
    GoAway,
}

/// Serves one accepted connection to its end.
pub(super) async fn serve(tcp: TcpStream, shared: Arc<Shared>) {
    let holding = Arc::new(AtomicBool::new(false));
    let io = Gated::new(tcp, shared.clone(), holding.clone());
    let mut conn: Conn = match h2::server::handshake(io).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!(error = %e, "h2 fault server: handshake failed");
            return;
        }
    };
    let mut answers = JoinSet::new();
    let ended =
        std::future::poll_fn(|cx| poll_streams(cx, &mut conn, &mut answers, &shared, &holding))
            .await;
    match ended {
        Ok(Ended::Closed) => {}
        Ok(Ended::GoAway) => go_away(conn, &shared).await,
        Err(e) => tracing::debug!(error = %e, "h2 fault server: connection failed"),
    }
}

/// Drives the connection: takes up or refuses new streams and reaps answered ones,
/// until the connection ends or is due its GOAWAY.
fn poll_streams(
    cx: &mut Context<'_>,
    conn: &mut Conn,
    answers: &mut JoinSet<()>,
    shared: &Arc<Shared>,
    holding: &AtomicBool,
) -> Poll<Result<Ended, h2::Error>> {
    loop {
        while let Poll::Ready(Some(res)) = answers.poll_join_next(cx) {
            if let Err(e) = res {
                tracing::error!(error = %e, "h2 fault server: answer task failed");
            }
        }
        match std::pin::pin!(conn.accept()).poll(cx) {
            Poll::Ready(Some(Ok((request, respond)))) => {
                take_up(request, respond, shared, answers);
                continue;
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
            Poll::Ready(None) => return Poll::Ready(Ok(Ended::Closed)),
            Poll::Pending => {}
        }
        // `has_streams` turns false once the answers' last frames are queued for the
        // socket: the GOAWAY goes out after them.
        if holding.load(Ordering::Relaxed) && answers.is_empty() && !conn.has_streams() {
            return Poll::Ready(Ok(Ended::GoAway));
        }
        return Poll::Pending;
    }
}

fn take_up(
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    shared: &Arc<Shared>,
    answers: &mut JoinSet<()>,
) {
    if shared.take_refusal() {
        respond.send_reset(Reason::REFUSED_STREAM);
        Shared::count(&shared.refused);
        return;
    }
    Shared::count(&shared.processed);
    let shared = shared.clone();
    answers.spawn(async move { super::grpc::answer(request, respond, &shared.id).await });
}

/// Sends the GOAWAY (last-stream-id: the highest stream `h2` has read, which is the
/// last one taken up) and closes the connection.
async fn go_away(mut conn: Conn, shared: &Shared) {
    conn.abrupt_shutdown(Reason::NO_ERROR);
    Shared::count(&shared.goaways);
    if let Err(e) = std::future::poll_fn(|cx| conn.poll_closed(cx)).await {
        tracing::debug!(error = %e, "h2 fault server: closing after GOAWAY");
    }
}
