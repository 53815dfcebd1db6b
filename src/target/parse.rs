//! The syntax of a target URI, scheme-agnostic: `scheme:[//authority][/path][?query]`,
//! percent-decoding, query pairs, and `host:port` checks.
// Which helpers a build uses depends on the registries it has.
#![cfg_attr(not(all(feature = "consul", feature = "nacos")), allow(dead_code))]

use crate::error::{Error, Result};

/// A target URI split into its parts, before any scheme gives them a meaning.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Parts<'a> {
    pub(super) scheme: &'a str,
    /// `None` without `//`; `Some("")` for `scheme:///…`.
    pub(super) authority: Option<&'a str>,
    /// The path without its leading `/`.
    pub(super) path: &'a str,
    /// The query without its `?`, or `None` without one.
    pub(super) query: Option<&'a str>,
}

/// Splits `uri` into scheme, authority, path and query.
pub(super) fn split(uri: &str) -> Result<Parts<'_>> {
    let (scheme, rest) = uri.split_once(':').ok_or_else(|| {
        Error::config(format!(
            "target `{uri}` has no scheme (expected scheme:[//authority]/path)"
        ))
    })?;
    if scheme.is_empty() {
        return Err(Error::config(format!("target `{uri}` has an empty scheme")));
    }
    if rest.contains('#') {
        return Err(Error::config(format!(
            "target `{uri}` has a fragment (`#…`); targets take none"
        )));
    }
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match rest.strip_prefix("//") {
        Some(rest) => match rest.split_once('/') {
            Some((authority, path)) => (Some(authority), path),
            None => (Some(rest), ""),
        },
        None => (None, rest.strip_prefix('/').unwrap_or(rest)),
    };
    if let Some(authority) = authority
        && authority.contains('@')
    {
        return Err(Error::config(format!(
            "target `{uri}`: user information (`…@`) is not accepted in the authority; \
             give credentials to the registry's client builder"
        )));
    }
    Ok(Parts {
        scheme,
        authority,
        path,
        query,
    })
}

/// The `key=value` pairs of a query, both percent-decoded (`+` is a space, as Go's
/// `url.ParseQuery` reads it). Empty pairs (`a=1&&b=2`) are skipped.
pub(super) fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>> {
    let Some(query) = query else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(key, true)?, decode(value, true)?))
        })
        .collect()
}

/// Percent-decodes `s`; with `plus_is_space`, `+` decodes to a space.
pub(super) fn decode(s: &str, plus_is_space: bool) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        Error::config(format!("`{s}`: `%` not followed by two hex digits"))
                    })?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| Error::config(format!("`{s}` does not decode to UTF-8")))
}

/// A boolean query value: `true`/`false`/`1`/`0`.
pub(super) fn boolean(key: &str, value: &str) -> Result<bool> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(Error::config(format!(
            "query key `{key}`: `{value}` is not true, false, 1 or 0"
        ))),
    }
}

/// Checks `host:port` (`[v6]:port` for an IPv6 literal): a port from 1 to 65535 and a
/// host that is an IP literal or a DNS name.
/// The error names the scheme and the bad part.
pub(super) fn host_port(scheme: &str, addr: &str) -> Result<()> {
    check_host_port(addr).map_err(|e| Error::config(format!("{scheme}: address {e}")))
}

fn check_host_port(addr: &str) -> std::result::Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("`{addr}` has no port (expected HOST:PORT)"))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => {
            return Err(format!(
                "`{addr}`: port `{port}` is not a number from 1 to 65535"
            ));
        }
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .map(drop)
            .map_err(|_| format!("`{addr}`: `{host}` is not an IPv6 address"));
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() || is_dns_name(host) {
        Ok(())
    } else {
        Err(format!(
            "`{addr}`: host `{host}` is neither an IP address nor a DNS name"
        ))
    }
}

/// A DNS name: dot-separated labels of 1 to 63 letters, digits, `-` or `_` (SRV names
/// start with `_`), not starting or ending with `-`; a trailing dot allowed.
pub(super) fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Comma-separated `host:port` entries, each checked; at least one.
pub(super) fn host_list(scheme: &str, list: &str) -> Result<Vec<String>> {
    if list.is_empty() {
        return Err(Error::config(format!(
            "{scheme}: needs at least one HOST:PORT"
        )));
    }
    list.split(',')
        .map(|addr| {
            host_port(scheme, addr)?;
            Ok(addr.to_owned())
        })
        .collect()
}
