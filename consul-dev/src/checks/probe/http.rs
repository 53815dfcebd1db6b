//! HTTP checks over hyper's HTTP/1 client, as the agent's `CheckHTTP` runs them:
//! `User-Agent: Consul Health Check`, `Accept: text/plain, text/*, */*`, the check's
//! headers over those, up to 10 redirects unless `DisableRedirects`, 2xx passing,
//! 429 warning, anything else critical, and the output `HTTP GET URL: 200 OK Output:
//! BODY` capped at the output size.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::store::model::CheckStatus;

/// Consul's default `OutputMaxSize` (4 KiB).
const OUTPUT_MAX: usize = 4096;
/// Go's `http.Client` gives up after 10 redirects.
const MAX_REDIRECTS: usize = 10;

/// What an HTTP check sends.
#[derive(Debug)]
pub(crate) struct HttpProbe<'a> {
    pub(crate) url: &'a str,
    pub(crate) method: &'a str,
    pub(crate) header: &'a BTreeMap<String, Vec<String>>,
    pub(crate) body: &'a str,
    pub(crate) tls_skip_verify: bool,
    pub(crate) disable_redirects: bool,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs one HTTP check with `timeout` for the whole exchange.
pub(crate) async fn run(p: &HttpProbe<'_>, timeout: Duration) -> (CheckStatus, String) {
    let method = if p.method.is_empty() { "GET" } else { p.method };
    let Ok(m) = Method::from_bytes(method.as_bytes()) else {
        return (
            CheckStatus::Critical,
            format!("net/http: invalid method {method:?}"),
        );
    };
    let verb = go_verb(&m);
    let outcome = tokio::time::timeout(timeout, follow(p, m)).await;
    let (code, body) = match outcome {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return (CheckStatus::Critical, format!("{verb} \"{}\": {e}", p.url));
        }
        Err(_) => {
            return (
                CheckStatus::Critical,
                format!(
                    "{verb} \"{}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                    p.url
                ),
            );
        }
    };
    let text = String::from_utf8_lossy(&body);
    let output = format!(
        "HTTP {method} {}: {} Output: {text}",
        p.url,
        status_line(code)
    );
    let status = if code.is_success() {
        CheckStatus::Passing
    } else if code == StatusCode::TOO_MANY_REQUESTS {
        CheckStatus::Warning
    } else {
        CheckStatus::Critical
    };
    (status, output)
}

/// Go's error prefix: `Get`, `Post`, … (the method with only its first letter upper).
fn go_verb(m: &Method) -> String {
    let s = m.as_str();
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        out.push(if i == 0 { c } else { c.to_ascii_lowercase() });
    }
    out
}

/// Go's `resp.Status`: `200 OK`.
fn status_line(code: StatusCode) -> String {
    match code.canonical_reason() {
        Some(reason) => format!("{} {reason}", code.as_u16()),
        None => code.as_u16().to_string(),
    }
}

/// Sends the request, following redirects as Go's client does (303, and 301/302 for
/// a POST, turn into a GET without a body).
async fn follow(p: &HttpProbe<'_>, mut method: Method) -> Result<(StatusCode, Bytes), BoxError> {
    let mut uri: Uri = p.url.parse()?;
    let mut body = Bytes::copy_from_slice(p.body.as_bytes());
    for _ in 0..=MAX_REDIRECTS {
        let (code, location, text) = once(p, &method, &uri, body.clone()).await?;
        let Some(location) = location.filter(|_| code.is_redirection() && !p.disable_redirects)
        else {
            return Ok((code, text));
        };
        uri = resolve(&uri, &location)?;
        if code == StatusCode::SEE_OTHER
            || (matches!(code.as_u16(), 301 | 302) && method == Method::POST)
        {
            method = Method::GET;
            body = Bytes::new();
        }
    }
    Err("stopped after 10 redirects".into())
}

/// A `Location` against the URL that answered it.
fn resolve(base: &Uri, location: &str) -> Result<Uri, BoxError> {
    let loc: Uri = location.parse()?;
    if loc.scheme().is_some() {
        return Ok(loc);
    }
    let mut parts = base.clone().into_parts();
    parts.path_and_query = loc.path_and_query().cloned();
    Ok(Uri::from_parts(parts)?)
}

/// One exchange on a fresh connection.
async fn once(
    p: &HttpProbe<'_>,
    method: &Method,
    uri: &Uri,
    body: Bytes,
) -> Result<(StatusCode, Option<String>, Bytes), BoxError> {
    let host = uri.host().ok_or("no Host in request URL")?;
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
    let req = build(p, method, uri, body)?;
    let resp = if https {
        let tls = super::tls::connect(tcp, host, p.tls_skip_verify).await?;
        exchange(TokioIo::new(tls), req).await?
    } else {
        exchange(TokioIo::new(tcp), req).await?
    };
    Ok(resp)
}

fn build(
    p: &HttpProbe<'_>,
    method: &Method,
    uri: &Uri,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, BoxError> {
    let authority = uri.authority().ok_or("no Host in request URL")?.as_str();
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut req = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(http::header::HOST, authority)
        .header(http::header::USER_AGENT, "Consul Health Check")
        .header(http::header::ACCEPT, "text/plain, text/*, */*");
    let headers = req.headers_mut().ok_or("invalid request")?;
    for (name, values) in p.header {
        let name = http::HeaderName::from_bytes(name.as_bytes())?;
        headers.remove(&name);
        for v in values {
            headers.append(name.clone(), http::HeaderValue::from_str(v)?);
        }
    }
    Ok(req.body(Full::new(body))?)
}

async fn exchange<T>(
    io: T,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Option<String>, Bytes), BoxError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    // The connection task ends when the exchange is done and `sender` drops.
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await;
    let out = async {
        let resp = resp?;
        let code = resp.status();
        let location = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Read up to the output cap; the rest of the body is dropped with the
        // connection, as the agent does.
        let mut body = resp.into_body();
        let mut text = Vec::new();
        while text.len() < OUTPUT_MAX {
            match body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        text.extend_from_slice(&data);
                    }
                }
                _ => break,
            }
        }
        text.truncate(OUTPUT_MAX);
        Ok::<_, BoxError>((code, location, Bytes::from(text)))
    }
    .await;
    drop(sender);
    driver.abort();
    out
}
