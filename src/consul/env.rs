//! Client configuration from the environment, as the official Consul clients read it.

use super::builder::ClientBuilder;
use super::client::{Client, DEFAULT_ADDR};
use crate::error::{Error, Result};

// === impl ClientBuilder ===

impl ClientBuilder {
    /// A builder configured from the environment like Consul's own CLI and clients:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `CONSUL_HTTP_ADDR` | `host:port`, `http://…` or `https://…`; default `127.0.0.1:8500` |
    /// | `CONSUL_HTTP_TOKEN_FILE` | file holding the ACL token; wins over `CONSUL_HTTP_TOKEN` |
    /// | `CONSUL_HTTP_TOKEN` | the ACL token |
    /// | `CONSUL_HTTP_SSL` | `true` forces HTTPS |
    /// | `CONSUL_HTTP_SSL_VERIFY` | `false` accepts any certificate |
    /// | `CONSUL_CACERT` | PEM file of CA certificates to trust |
    /// | `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY` | PEM files for mutual TLS (both or neither) |
    /// | `CONSUL_TLS_SERVER_NAME` | name to verify the agent's certificate against |
    ///
    /// Empty variables count as unset. Setters called afterwards override them.
    /// Invalid values are reported by [`build`](Self::build) or
    /// [`connect`](Self::connect), which also read the files.
    pub fn from_env() -> ClientBuilder {
        from_lookup(|name| std::env::var(name).ok())
    }
}

// === impl Client ===

impl Client {
    /// A client configured from the environment; see [`ClientBuilder::from_env`].
    ///
    /// # Errors
    ///
    /// A configuration error for an invalid variable or an unreadable file it names.
    pub fn from_env() -> Result<Client> {
        ClientBuilder::from_env().build()
    }
}

/// [`ClientBuilder::from_env`] over any lookup, so tests need not touch the process
/// environment.
pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> ClientBuilder {
    let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    let mut b = Client::builder(var("CONSUL_HTTP_ADDR").unwrap_or_else(|| DEFAULT_ADDR.to_owned()));
    if let Some(path) = var("CONSUL_HTTP_TOKEN_FILE") {
        b = b.token_file(path);
    } else if let Some(token) = var("CONSUL_HTTP_TOKEN") {
        b = b.token(token);
    }
    match var("CONSUL_HTTP_SSL").map(|v| parse_bool("CONSUL_HTTP_SSL", &v)) {
        Some(Ok(https)) => b = b.https(https),
        Some(Err(e)) => b = b.fail(e),
        None => {}
    }
    match var("CONSUL_HTTP_SSL_VERIFY").map(|v| parse_bool("CONSUL_HTTP_SSL_VERIFY", &v)) {
        Some(Ok(verify)) => b = b.danger_accept_invalid_certs(!verify),
        Some(Err(e)) => b = b.fail(e),
        None => {}
    }
    if let Some(path) = var("CONSUL_CACERT") {
        b = b.ca_cert_file(path);
    }
    match (var("CONSUL_CLIENT_CERT"), var("CONSUL_CLIENT_KEY")) {
        (Some(cert), Some(key)) => b = b.client_identity_files(cert, key),
        (None, None) => {}
        _ => {
            b = b.fail(Error::config(
                "CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY must be set together",
            ))
        }
    }
    if let Some(name) = var("CONSUL_TLS_SERVER_NAME") {
        b = b.tls_server_name(name);
    }
    b
}

/// Go's `strconv.ParseBool`, which the official clients use.
fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value.trim() {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        other => Err(Error::config(format!("{name}=`{other}` is not a boolean"))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write;

    use super::*;

    fn build(vars: &[(&str, &str)]) -> Result<Client> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        from_lookup(|name| vars.get(name).cloned()).build()
    }

    fn token(client: &Client) -> Option<&str> {
        client.inner.token.as_ref().map(|t| t.expose())
    }

    #[test]
    fn addresses_from_consul_http_addr() {
        let table = [
            (None, Some("http://127.0.0.1:8500/")),
            (Some(""), Some("http://127.0.0.1:8500/")),
            (Some("10.0.0.1:8500"), Some("http://10.0.0.1:8500/")),
            (
                Some("http://consul.internal:8500"),
                Some("http://consul.internal:8500/"),
            ),
            (
                Some("https://consul.internal:8501"),
                Some("https://consul.internal:8501/"),
            ),
            (Some("[::1]:8500"), Some("http://[::1]:8500/")),
            (Some("unix:///var/run/consul.sock"), None),
            (Some("ftp://x:1"), None),
            (Some("http://"), None),
            (Some("http://a b:1"), None),
        ];
        for (addr, want) in table {
            // Without `tls-ring` an https address is a configuration error.
            let want = want.filter(|w| cfg!(feature = "tls-ring") || !w.starts_with("https"));
            let vars: Vec<(&str, &str)> =
                addr.map(|a| ("CONSUL_HTTP_ADDR", a)).into_iter().collect();
            match (build(&vars), want) {
                (Ok(c), Some(want)) => assert_eq!(c.address(), want, "{addr:?}"),
                (Err(e), None) => assert!(e.is_config(), "{addr:?}: {e}"),
                (got, want) => panic!("{addr:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn consul_http_ssl_forces_https_and_bad_booleans_are_config_errors() {
        let https = build(&[("CONSUL_HTTP_ADDR", "c:8501"), ("CONSUL_HTTP_SSL", "true")]);
        if cfg!(feature = "tls-ring") {
            assert_eq!(https.unwrap().address(), "https://c:8501/");
        } else {
            assert!(https.unwrap_err().to_string().contains("tls-ring"));
        }
        let c = build(&[("CONSUL_HTTP_ADDR", "c:8500"), ("CONSUL_HTTP_SSL", "0")]).unwrap();
        assert_eq!(c.address(), "http://c:8500/");
        let e = build(&[("CONSUL_HTTP_SSL", "yes")]).unwrap_err();
        assert!(
            e.is_config() && e.to_string().contains("CONSUL_HTTP_SSL"),
            "{e}"
        );
        let e = build(&[("CONSUL_HTTP_SSL_VERIFY", "nope")]).unwrap_err();
        assert!(e.to_string().contains("CONSUL_HTTP_SSL_VERIFY"), "{e}");
    }

    #[test]
    fn token_file_wins_over_token() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "  from-file  ").unwrap();
        let path = file.path().to_str().unwrap();
        let c = build(&[
            ("CONSUL_HTTP_TOKEN", "from-env"),
            ("CONSUL_HTTP_TOKEN_FILE", path),
        ])
        .unwrap();
        assert_eq!(token(&c), Some("from-file"));
        let c = build(&[
            ("CONSUL_HTTP_TOKEN", "from-env"),
            ("CONSUL_HTTP_TOKEN_FILE", ""),
        ])
        .unwrap();
        assert_eq!(token(&c), Some("from-env"));
        assert_eq!(token(&build(&[]).unwrap()), None);
    }

    #[test]
    fn unreadable_token_file_is_a_config_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-token");
        let e = build(&[("CONSUL_HTTP_TOKEN_FILE", missing.to_str().unwrap())]).unwrap_err();
        assert!(e.is_config());
        assert!(e.to_string().contains("no-such-token"), "{e}");
    }

    #[test]
    fn client_cert_and_key_come_together() {
        for var in ["CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY"] {
            let e = build(&[(var, "/x.pem")]).unwrap_err();
            assert!(e.is_config() && e.to_string().contains("together"), "{e}");
        }
    }

    #[cfg(feature = "tls-ring")]
    #[test]
    fn unreadable_ca_file_is_a_config_error_naming_the_path() {
        let e = build(&[
            ("CONSUL_HTTP_ADDR", "https://c:8501"),
            ("CONSUL_CACERT", "/nonexistent/ca.pem"),
        ])
        .unwrap_err();
        assert!(
            e.is_config() && e.to_string().contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }
}

#[cfg(all(test, feature = "tls-ring"))]
#[path = "tls_env_tests.rs"]
mod tls_env_tests;
