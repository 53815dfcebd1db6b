//! Just enough gRPC to answer `/echo.v1.Echo/Echo` and `/echo.v1.Echo/EchoStream`
//! calls over `h2`.

use bytes::{BufMut, Bytes, BytesMut};
use h2::RecvStream;
use h2::server::SendResponse;
use http::{HeaderMap, HeaderValue, Request, Response};
use prost::Message;
use tonic::Code;

use crate::pb::{EchoRequest, EchoResponse, EchoStreamRequest};

const ECHO_PATH: &str = "/echo.v1.Echo/Echo";
const ECHO_STREAM_PATH: &str = "/echo.v1.Echo/EchoStream";
/// tonic's default limit for a decoded message.
const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// The gRPC message prefix: a compressed flag and a big-endian length.
const PREFIX_LEN: usize = 5;

/// Answers one unary `Echo` call; other methods get `UNIMPLEMENTED`. A client that
/// goes away midway just ends it.
pub(super) async fn answer(request: Request<RecvStream>, respond: SendResponse<Bytes>, id: &str) {
    if request.uri().path() != ECHO_PATH {
        let status = (Code::Unimplemented, "only /echo.v1.Echo/Echo is served");
        if let Err(e) = send_status(respond, status.0, status.1) {
            tracing::debug!(error = %e, "h2 fault server: answer not sent");
        }
        return;
    }
    answer_after(request, respond, id, std::time::Duration::ZERO).await;
}

/// Answers one stream: `Echo` `delay` after the request arrived (nothing is sent
/// before), `EchoStream` with its `count` messages `interval_ms` apart.
pub(crate) async fn answer_after(
    request: Request<RecvStream>,
    respond: SendResponse<Bytes>,
    id: &str,
    delay: std::time::Duration,
) {
    if request.uri().path() == ECHO_STREAM_PATH {
        if let Err(e) = echo_stream(request.into_body(), respond, id).await {
            tracing::debug!(error = %e, "h2 server: stream not sent");
        }
        return;
    }
    let reply = if request.uri().path() == ECHO_PATH {
        let reply = echo(request.into_body(), id).await;
        tokio::time::sleep(delay).await;
        reply
    } else {
        Err((Code::Unimplemented, "only /echo.v1.Echo/Echo is served"))
    };
    let sent = match reply {
        Ok(Some(message)) => send_message(respond, message),
        Ok(None) => return,
        Err((code, message)) => send_status(respond, code, message),
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "h2 fault server: answer not sent");
    }
}

/// Headers, then `count` messages `interval_ms` apart, then `grpc-status: 0`.
async fn echo_stream(
    body: RecvStream,
    mut respond: SendResponse<Bytes>,
    id: &str,
) -> Result<(), h2::Error> {
    let request = match read_body(body).await {
        Ok(Some(body)) => match decode_as::<EchoStreamRequest>(&body) {
            Ok(request) => request,
            Err((code, message)) => return send_status(respond, code, message),
        },
        Ok(None) => return Ok(()),
        Err((code, message)) => return send_status(respond, code, message),
    };
    let mut stream = respond.send_response(grpc_headers(), false)?;
    let interval = std::time::Duration::from_millis(u64::from(request.interval_ms));
    for _ in 0..request.count {
        tokio::time::sleep(interval).await;
        let framed = frame(EchoResponse {
            message: request.message.clone(),
            instance_id: id.to_owned(),
        })
        .map_err(|_| h2::Error::from(h2::Reason::INTERNAL_ERROR))?;
        stream.send_data(framed, false)?;
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    stream.send_trailers(trailers)
}

/// The framed `EchoResponse`, `None` when the request did not arrive whole.
async fn echo(body: RecvStream, id: &str) -> Result<Option<Bytes>, (Code, &'static str)> {
    let Some(body) = read_body(body).await? else {
        return Ok(None);
    };
    let request: EchoRequest = decode_as(&body)?;
    let response = EchoResponse {
        message: request.message,
        instance_id: id.to_owned(),
    };
    frame(response).map(Some)
}

fn frame(response: EchoResponse) -> Result<Bytes, (Code, &'static str)> {
    let mut framed = BytesMut::with_capacity(PREFIX_LEN + response.encoded_len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(response.encoded_len()).unwrap_or(u32::MAX));
    response
        .encode(&mut framed)
        .map_err(|_| (Code::Internal, "response encoding failed"))?;
    Ok(framed.freeze())
}

async fn read_body(mut body: RecvStream) -> Result<Option<BytesMut>, (Code, &'static str)> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else {
            return Ok(None);
        };
        let _ = body.flow_control().release_capacity(chunk.len());
        if buf.len() + chunk.len() > PREFIX_LEN + MAX_MESSAGE {
            return Err((Code::ResourceExhausted, "message too large"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf))
}

fn decode_as<M: Message + Default>(body: &[u8]) -> Result<M, (Code, &'static str)> {
    let Some((prefix, message)) = body.split_first_chunk::<PREFIX_LEN>() else {
        return Err((Code::Internal, "no gRPC message"));
    };
    if prefix[0] != 0 {
        return Err((Code::Unimplemented, "compressed messages are not supported"));
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
    if usize::try_from(len).ok() != Some(message.len()) {
        return Err((Code::Internal, "expected exactly one gRPC message"));
    }
    M::decode(message).map_err(|_| (Code::Internal, "undecodable request message"))
}

fn grpc_headers() -> Response<()> {
    let mut response = Response::new(());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// Headers, one DATA frame, trailers with `grpc-status: 0`.
fn send_message(mut respond: SendResponse<Bytes>, message: Bytes) -> Result<(), h2::Error> {
    let mut stream = respond.send_response(grpc_headers(), false)?;
    stream.send_data(message, false)?;
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    stream.send_trailers(trailers)
}

/// A trailers-only response: one HEADERS frame with the status, ending the stream.
fn send_status(
    mut respond: SendResponse<Bytes>,
    code: Code,
    message: &'static str,
) -> Result<(), h2::Error> {
    let mut response = grpc_headers();
    let headers = response.headers_mut();
    headers.insert("grpc-status", HeaderValue::from(i32::from(code)));
    headers.insert("grpc-message", HeaderValue::from_static(message));
    respond.send_response(response, true).map(drop)
}
