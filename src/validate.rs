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

/// The default rule for service names, as every refusal states it.
pub(crate) const NAME_RULE: &str = "a service name is a DNS label: 1 to 63 ASCII letters, \
     digits and dashes, not starting or ending with a dash";
/// The rule for service names with `allow_non_dns_name(true)`.
pub(crate) const NON_DNS_NAME_RULE: &str = "with `allow_non_dns_name(true)`, a service name \
     is 1 to 63 ASCII letters, digits, dashes, underscores and dots";
/// The rule for instance IDs, as every refusal states it.
pub(crate) const ID_RULE: &str =
    "an instance ID is 1 to 128 ASCII letters, digits, `-`, `_`, `.` and `:`";

/// Checks a service name against the default rule ([`NAME_RULE`]): a DNS label. A name
/// Consul accepts but DNS cannot carry (underscores, dots) is refused with the dashed
/// name to use instead, and the opt-in that allows it while a fleet migrates.
pub(crate) fn service_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::config(format!("service name is empty; {NAME_RULE}")));
    }
    if let Some(c) = name.chars().find(|c| !is_dns_char(*c)) {
        if is_non_dns_name(name) {
            let what = if c == '_' { "an underscore" } else { "a dot" };
            return Err(Error::config(format!(
                "service name `{name}` contains {what}, which DNS names cannot carry, so the \
                 service would not be discoverable through DNS; {NAME_RULE}: use `{}` \
                 instead, or register with `allow_non_dns_name(true)` while clients move",
                dashed(name)
            )));
        }
        return Err(Error::config(format!(
            "service name `{name}` contains {c:?}; {NAME_RULE}"
        )));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::config(format!(
            "service name `{name}` is {} bytes long; {NAME_RULE}",
            name.len()
        )));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(Error::config(format!(
            "service name `{name}` starts or ends with a dash; {NAME_RULE}"
        )));
    }
    Ok(())
}

/// Checks a service name against the opt-in rule ([`NON_DNS_NAME_RULE`]): what Consul
/// accepts (it only warns that DNS cannot serve it), within the DNS label's length so
/// that the default instance ID still has room for the host and port.
pub(crate) fn non_dns_service_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::config(format!(
            "service name is empty; {NON_DNS_NAME_RULE}"
        )));
    }
    if let Some(c) = name.chars().find(|c| !is_non_dns_char(*c)) {
        return Err(Error::config(format!(
            "service name `{name}` contains {c:?}; {NON_DNS_NAME_RULE}"
        )));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::config(format!(
            "service name `{name}` is {} bytes long; {NON_DNS_NAME_RULE}",
            name.len()
        )));
    }
    Ok(())
}

/// Whether `name` passes the default rule: DNS can carry it.
pub(crate) fn is_dns_name(name: &str) -> bool {
    service_name(name).is_ok()
}

/// Within the opt-in rule's characters (not necessarily its length).
fn is_non_dns_name(name: &str) -> bool {
    name.chars().all(is_non_dns_char)
}

fn is_dns_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

fn is_non_dns_char(c: char) -> bool {
    is_dns_char(c) || matches!(c, '_' | '.')
}

/// `name` with underscores and dots as dashes, and no dash at either end.
fn dashed(name: &str) -> String {
    name.replace(['_', '.'], "-").trim_matches('-').to_owned()
}

/// Checks an instance ID against [`ID_RULE`].
///
/// IDs go into URL paths (`/v1/agent/service/deregister/:id`) and check IDs
/// (`service:<id>`), so slashes, spaces and other characters are refused.
pub(crate) fn instance_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::config(format!("service ID is empty; {ID_RULE}")));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::config(format!(
            "service ID `{id}` is {} bytes long; {ID_RULE}",
            id.len()
        )));
    }
    if let Some(c) = id.chars().find(|c| !is_id_char(*c)) {
        return Err(Error::config(format!(
            "service ID `{id}` contains {c:?}; {ID_RULE}"
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
        assert!(e.contains(NAME_RULE), "{e}");
        assert!(e.contains("allow_non_dns_name(true)"), "{e}");
    }

    #[test]
    fn dot_error_suggests_dashes_and_the_opt_in() {
        let e = service_name("_billing.v1").unwrap_err().to_string();
        assert!(e.contains("a dot") || e.contains("an underscore"), "{e}");
        assert!(e.contains("`billing-v1`"), "{e}");
        assert!(e.contains("allow_non_dns_name(true)"), "{e}");
    }

    #[test]
    fn every_name_refusal_names_the_rule() {
        let too_long = "a".repeat(64);
        for bad in ["", "-echo", "echo-", "echo v1", "écho", too_long.as_str()] {
            let e = service_name(bad).unwrap_err().to_string();
            assert!(e.contains(NAME_RULE), "{bad:?}: {e}");
        }
        for bad in ["", "echo v1", "echo/v1", too_long.as_str()] {
            let e = non_dns_service_name(bad).unwrap_err().to_string();
            assert!(e.contains(NON_DNS_NAME_RULE), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_opt_in_takes_underscores_and_dots_and_nothing_else() {
        let longest = "a_".repeat(31) + "b";
        for ok in [
            "user_service",
            "billing.v1",
            "a",
            "_x.",
            longest.as_str(),
            "echo",
        ] {
            assert!(non_dns_service_name(ok).is_ok(), "{ok} should be accepted");
            assert_eq!(is_dns_name(ok), service_name(ok).is_ok(), "{ok}");
        }
        assert!(!is_dns_name("user_service"));
        assert!(is_dns_name("user-service"));
        let too_long = "a.".repeat(32);
        for bad in ["", "a/b", "a b", "a:b", "ü", too_long.as_str()] {
            assert!(non_dns_service_name(bad).unwrap_err().is_config(), "{bad}");
        }
    }

    #[test]
    fn every_id_refusal_names_the_rule() {
        for bad in ["", "a/b", "a b", &"a".repeat(129)] {
            let e = instance_id(bad).unwrap_err().to_string();
            assert!(e.contains(ID_RULE), "{bad:?}: {e}");
        }
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
