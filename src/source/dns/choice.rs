//! gRFC A2 "Service Config via DNS": which service config the TXT records of
//! `_grpc_config.<name>` give this client.

use hickory_resolver::proto::rr::rdata::TXT;
use rand::Rng;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Kind, Result};

/// The RFC 1464 attribute a record's text starts with (case-sensitive, as in every
/// gRPC implementation).
const ATTRIBUTE: &[u8] = b"grpc_config=";

/// Our name in `clientLanguage` lists.
const LANGUAGE: &str = "rust";

/// This client, as a choice's criteria see it.
#[derive(Debug, Clone)]
pub(super) struct Client {
    hostname: String,
    /// This watch's draw, 0 to 99: a choice of `percentage` p applies when it is below p.
    draw: u8,
}

/// One entry of the choices list. Unknown fields are ignored, as grpc-go and grpc
/// C-core do.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Choice {
    client_language: Option<Vec<String>>,
    percentage: Option<u8>,
    // grpc-go reads the key case-insensitively, and its tests spell it `clientHostName`.
    #[serde(alias = "clientHostName")]
    client_hostname: Option<Vec<String>>,
    service_config: Map<String, Value>,
}

// === impl Client ===

impl Client {
    /// This host (its name as the system gives it) and a fresh draw.
    pub(super) fn this_host() -> Self {
        let hostname = gethostname::gethostname().to_string_lossy().into_owned();
        Client::new(hostname, rand::rng().random_range(0..100))
    }

    pub(super) fn new(hostname: impl Into<String>, draw: u8) -> Self {
        Client {
            hostname: hostname.into(),
            draw: draw.min(99),
        }
    }

    /// Whether `choice`'s criteria all hold for this client (an absent or empty list
    /// matches every client).
    fn accepts(&self, choice: &Choice) -> bool {
        let listed = |list: &Option<Vec<String>>, hit: &dyn Fn(&str) -> bool| match list {
            Some(list) if !list.is_empty() => list.iter().any(|s| hit(s)),
            _ => true,
        };
        listed(&choice.client_language, &|l| {
            l.eq_ignore_ascii_case(LANGUAGE)
        }) && choice.percentage.is_none_or(|p| self.draw < p)
            && listed(&choice.client_hostname, &|h| h == self.hostname)
    }
}

/// The service config `records` (the TXT records of `owner`) give `client`,
/// serialized as compact JSON; `None` when no record is a `grpc_config=` one or no
/// choice applies.
///
/// # Errors
///
/// A decode error when the `grpc_config=` record is not a valid choices list (not
/// UTF-8, not JSON, not an array of objects, a criterion of the wrong type, a
/// percentage above 100, a choice without a `serviceConfig` object), or when there
/// are two such records.
pub(super) fn select<'a>(
    owner: &str,
    records: impl IntoIterator<Item = &'a TXT>,
    client: &Client,
) -> Result<Option<String>> {
    let mut texts = records
        .into_iter()
        .map(|txt| txt.txt_data.concat())
        .filter(|text| text.starts_with(ATTRIBUTE));
    let Some(text) = texts.next() else {
        return Ok(None);
    };
    let bad = |why: String| Error::new(Kind::Decode, format!("TXT {owner}: {why}"));
    if texts.next().is_some() {
        return Err(bad("more than one grpc_config record".into()));
    }
    let json = std::str::from_utf8(&text[ATTRIBUTE.len()..])
        .map_err(|e| bad("grpc_config is not UTF-8".into()).with_source(e))?;
    let choices: Vec<Choice> = serde_json::from_str(json).map_err(|e| {
        bad(format!(
            "grpc_config is not a list of service config choices: {e}"
        ))
    })?;
    if let Some(p) = choices
        .iter()
        .find_map(|c| c.percentage.filter(|&p| p > 100))
    {
        return Err(bad(format!("grpc_config: percentage {p} is above 100")));
    }
    let chosen = choices.into_iter().find(|c| client.accepts(c));
    Ok(chosen.map(|c| Value::Object(c.service_config).to_string()))
}

#[cfg(test)]
#[path = "choice_tests.rs"]
mod tests;
