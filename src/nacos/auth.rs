//! Logging in to a Nacos server with a user name and password.
//!
//! The SDK has a login plugin of its own, but it puts the password in the URL and
//! writes it, and the server's answer with the access token, to its debug log. This
//! one posts the credentials as a form body and logs neither.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nacos_sdk::api::plugin::{AuthContext, AuthPlugin, LoginIdentityContext, RequestResource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// The header (gRPC metadata) the server reads the token from.
const ACCESS_TOKEN: &str = "accessToken";
/// The most of the server's answer read: a login answer is a small JSON object.
const MAX_ANSWER: u64 = 64 * 1024;

/// Logs in over the open API and hands the SDK the access token.
pub(crate) struct Login {
    username: String,
    password: String,
    timeout: Duration,
    token: Mutex<Option<Token>>,
}

struct Token {
    value: String,
    refresh_at: Instant,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    access_token: String,
    #[serde(default)]
    token_ttl: u64,
}

impl Login {
    pub(crate) fn new(username: String, password: String, timeout: Duration) -> Self {
        Login {
            username,
            password,
            timeout,
            token: Mutex::new(None),
        }
    }

    fn fresh(&self) -> bool {
        let token = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        token
            .as_ref()
            .is_some_and(|t| Instant::now() < t.refresh_at)
    }

    /// One login against `server` (`host:port`, the HTTP port).
    async fn login_at(&self, server: &str) -> Result<Token, String> {
        let body = format!(
            "username={}&password={}",
            form_encode(&self.username),
            form_encode(&self.password)
        );
        let request = format!(
            "POST /nacos/v1/auth/login HTTP/1.0\r\nHost: {server}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(server).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut answer = Vec::new();
            (&mut stream)
                .take(MAX_ANSWER)
                .read_to_end(&mut answer)
                .await?;
            std::io::Result::Ok(answer)
        };
        let answer = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(format!("login request failed: {e}")),
            Err(_) => return Err(format!("login timed out after {:?}", self.timeout)),
        };
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).unwrap_or("?");
        if status != "200" {
            // The body of a refusal says why (a wrong password, say) and holds no secret.
            let why: String = body.chars().take(200).collect();
            return Err(format!("login refused with status {status}: {why}"));
        }
        let answer: Answer = serde_json::from_str(body)
            .map_err(|e| format!("login answer is not the expected JSON: {e}"))?;
        // Refreshed when a tenth of its lifetime is left, as Nacos's Java client does
        // (the SDK asks every 30 s); at once when the server gives no lifetime.
        let ttl = Duration::from_secs(answer.token_ttl - answer.token_ttl / 10);
        Ok(Token {
            value: answer.access_token,
            refresh_at: Instant::now() + ttl,
        })
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl AuthPlugin for Login {
    async fn login(&self, server_list: Arc<Vec<String>>, _context: Arc<AuthContext>) {
        if self.fresh() {
            return;
        }
        for server in server_list.iter() {
            match self.login_at(server).await {
                Ok(token) => {
                    tracing::debug!(%server, user = %self.username, "logged in to nacos");
                    *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(token);
                    return;
                }
                Err(e) => {
                    tracing::warn!(%server, user = %self.username, error = %e, "nacos login failed")
                }
            }
        }
    }

    fn get_login_identity(&self, _resource: RequestResource) -> LoginIdentityContext {
        let token = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        match token.as_ref() {
            Some(t) => LoginIdentityContext::default().add_context(ACCESS_TOKEN, t.value.clone()),
            None => LoginIdentityContext::default(),
        }
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(form_encode("nacos-1_2.3*"), "nacos-1_2.3*");
    }

    #[test]
    fn debug_shows_no_password() {
        let login = Login::new(
            "nacos".into(),
            "hunter2-secret".into(),
            Duration::from_secs(1),
        );
        let shown = format!("{login:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
