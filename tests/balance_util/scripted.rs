//! A scripted Echo instance for the retry and hedging tests.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tonic::metadata::MetadataMap;
use tonic::transport::Server;
use tonic::{Code, Request, Response, Status};
use tonic_discovery_testkit::pb::echo_server::{Echo, EchoServer};
use tonic_discovery_testkit::pb::{EchoRequest, EchoResponse, EchoStreamRequest};

/// A scripted Echo instance: answers each unary call with the next scripted answer
/// (OK once the script is empty), and records the `grpc-previous-rpc-attempts` each
/// call carried.
#[derive(Clone, Default)]
pub struct Scripted {
    pub script: Arc<Mutex<VecDeque<Status>>>,
    pub previous: Arc<Mutex<Vec<Option<String>>>>,
    /// The messages of the calls it received.
    pub messages: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Scripted {
    pub fn then_fail(&self, code: Code, pushback: Option<&str>) {
        let mut metadata = MetadataMap::new();
        if let Some(ms) = pushback {
            metadata.insert(
                "grpc-retry-pushback-ms",
                ms.parse().expect("metadata value"),
            );
        }
        let status = Status::with_metadata(code, "scripted", metadata);
        self.script.lock().expect("script").push_back(status);
    }

    pub fn take_previous(&self) -> Vec<Option<String>> {
        std::mem::take(&mut *self.previous.lock().expect("previous"))
    }

    pub async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let incoming = futures_util::stream::unfold(listener, |l| async move {
            Some((l.accept().await.map(|(s, _)| s), l))
        });
        let service = EchoServer::new(self.clone());
        tokio::spawn(
            Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        addr
    }
}

#[tonic::async_trait]
impl Echo for Scripted {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        let previous = request.metadata().get("grpc-previous-rpc-attempts");
        let previous = previous.and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.previous.lock().expect("previous").push(previous);
        let message = request.get_ref().message.clone();
        self.messages.lock().expect("messages").push(message);
        if let Some(status) = self.script.lock().expect("script").pop_front() {
            return Err(status);
        }
        Ok(Response::new(EchoResponse {
            message: request.into_inner().message,
            instance_id: "scripted".into(),
        }))
    }

    type EchoStreamStream = futures_util::stream::Empty<Result<EchoResponse, Status>>;

    async fn echo_stream(
        &self,
        _: Request<EchoStreamRequest>,
    ) -> Result<Response<Self::EchoStreamStream>, Status> {
        Err(Status::unimplemented("unary and client streams only"))
    }

    /// Answers the next scripted failure once the first message arrived (the caller
    /// still sending), else the messages joined when the stream ends; records the
    /// messages it read either way.
    async fn echo_collect(
        &self,
        request: Request<tonic::Streaming<EchoRequest>>,
    ) -> Result<Response<EchoResponse>, Status> {
        let previous = request.metadata().get("grpc-previous-rpc-attempts");
        let previous = previous.and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.previous.lock().expect("previous").push(previous);
        let mut stream = request.into_inner();
        let mut message = Vec::new();
        if let Some(first) = stream.message().await? {
            message.extend_from_slice(&first.message);
        }
        if let Some(status) = self.script.lock().expect("script").pop_front() {
            self.messages.lock().expect("messages").push(message);
            return Err(status);
        }
        while let Some(next) = stream.message().await? {
            message.extend_from_slice(&next.message);
        }
        self.messages
            .lock()
            .expect("messages")
            .push(message.clone());
        Ok(Response::new(EchoResponse {
            message,
            instance_id: "scripted".into(),
        }))
    }
}
