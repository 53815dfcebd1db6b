//! Validation of what a service registers as: names, instance IDs and metadata.
//!
//! Shared by every registry backend. Rules are checked before anything goes over the
//! network, so a bad name fails at once with a message saying why, instead of a
//! registration that succeeds but is not discoverable (Consul only logs a warning for a
//! name its DNS interface cannot serve).

use crate::error::{Error, Result};

/// The longest DNS label (RFC 1123), and so the longest service name.
pub(crate) const MAX_NAME_LEN: usize = 63;
/// The longest instance ID we accept.
pub(crate) const MAX_ID_LEN: usize = 128;
/// Consul's limits on service metadata (`agent/structs`: `metaMaxKeyPairs`,
/// `metaKeyMaxLength`, `metaValueMaxLength`).
pub(crate) const MAX_META_PAIRS: usize = 64;
pub(crate) const MAX_META_KEY_LEN: usize = 128;
pub(crate) const MAX_META_VALUE_LEN: usize = 512;

/// Checks a service name: a DNS label of ASCII letters, digits and dashes, 1 to 63
/// bytes, neither starting nor ending with a dash.
pub(crate) fn service_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::config("service name is empty"));
    }
    if name.contains('_') {
        return Err(Error::config(format!(
            "service name `{name}` contains an underscore, which DNS names cannot carry, so the \
             service would not be discoverable through DNS; use `{}` instead",
            name.replace('_', "-")
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && *c != '-')
    {
        return Err(Error::config(format!(
            "service name `{name}` contains {c:?}; use only ASCII letters, digits and dashes \
             (a DNS label)"
        )));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::config(format!(
            "service name `{name}` is {} bytes long; a DNS label holds at most {MAX_NAME_LEN}",
            name.len()
        )));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(Error::config(format!(
            "service name `{name}` starts or ends with a dash, which a DNS label cannot"
        )));
    }
    Ok(())
}

/// Checks an instance ID: 1 to 128 ASCII letters, digits, `-`, `_`, `.` or `:`.
///
/// IDs go into URL paths (`/v1/agent/service/deregister/:id`) and check IDs
/// (`service:<id>`), so slashes, spaces and other characters are refused.
pub(crate) fn instance_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::config("service ID is empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::config(format!(
            "service ID `{id}` is {} bytes long; at most {MAX_ID_LEN} are allowed",
            id.len()
        )));
    }
    if let Some(c) = id.chars().find(|c| !is_id_char(*c)) {
        return Err(Error::config(format!(
            "service ID `{id}` contains {c:?}; use only ASCII letters, digits, `-`, `_`, `.` and `:`"
        )));
    }
    Ok(())
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

/// Checks one metadata pair the way Consul does: keys of ASCII letters, digits, `-` and
/// `_`, at most 128 bytes, not starting with the reserved `consul-` prefix; values at most
/// 512 bytes.
pub(crate) fn meta_pair(key: &str, value: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::config("service metadata key is empty"));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !matches!(c, '-' | '_'))
    {
        return Err(Error::config(format!(
            "service metadata key `{key}` contains {c:?}; use only ASCII letters, digits, `-` and `_`"
        )));
    }
    if key.len() > MAX_META_KEY_LEN {
        return Err(Error::config(format!(
            "service metadata key `{key}` is longer than {MAX_META_KEY_LEN} bytes"
        )));
    }
    if key.to_ascii_lowercase().starts_with("consul-") {
        return Err(Error::config(format!(
            "service metadata key `{key}` uses the prefix `consul-`, which Consul reserves"
        )));
    }
    if value.len() > MAX_META_VALUE_LEN {
        return Err(Error::config(format!(
            "service metadata value of `{key}` is longer than {MAX_META_VALUE_LEN} bytes"
        )));
    }
    Ok(())
}

/// Turns free text (a hostname) into a piece of an instance ID: every character outside
/// `[A-Za-z0-9-]` becomes a dash, runs of dashes collapse, and dashes at either end go.
/// Returns `"host"` when nothing is left.
pub(crate) fn sanitize_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "host".to_owned()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        let long = "a".repeat(63);
        for ok in ["echo", "echo-v2", "E2", "a", long.as_str()] {
            assert!(service_name(ok).is_ok(), "{ok} should be accepted");
        }
        let too_long = "a".repeat(64);
        for bad in [
            "",
            "-echo",
            "echo-",
            "echo.v1",
            "echo v1",
            "écho",
            too_long.as_str(),
        ] {
            let e = service_name(bad).expect_err(bad);
            assert!(e.is_config(), "{bad}: {e}");
        }
    }

    #[test]
    fn underscore_error_says_why_and_suggests_dashes() {
        let e = service_name("user_service").unwrap_err().to_string();
        assert!(e.contains("underscore"), "{e}");
        assert!(e.contains("DNS"), "{e}");
        assert!(e.contains("`user-service`"), "{e}");
    }

    #[test]
    fn instance_ids() {
        for ok in ["echo-host-8080", "redis1", "a_b", "svc:1", "x.y"] {
            assert!(instance_id(ok).is_ok(), "{ok} should be accepted");
        }
        let too_long = "a".repeat(129);
        for bad in ["", "a/b", "a b", "a?b", "ü", too_long.as_str()] {
            assert!(instance_id(bad).unwrap_err().is_config(), "{bad}");
        }
    }

    #[test]
    fn meta_pairs_follow_consul() {
        assert!(meta_pair("redis_version", "4.0").is_ok());
        assert!(meta_pair("zone-a", "").is_ok());
        for (k, v) in [
            ("", "x"),
            ("a.b", "x"),
            ("consul-version", "1"),
            ("Consul-x", "1"),
        ] {
            assert!(meta_pair(k, v).unwrap_err().is_config(), "{k}");
        }
        assert!(meta_pair(&"k".repeat(129), "v").is_err());
        assert!(meta_pair("k", &"v".repeat(513)).is_err());
    }

    #[test]
    fn sanitizes_hostnames() {
        assert_eq!(sanitize_label("web-1.example.com"), "web-1-example-com");
        assert_eq!(sanitize_label("__my host__"), "my-host");
        assert_eq!(sanitize_label("..."), "host");
        assert_eq!(sanitize_label("ünï"), "n");
    }
}
