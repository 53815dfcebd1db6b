//! The one validation path every registration takes, whatever the registry: the
//! service name, the instance ID, the metadata and the advertised address.
//!
//! Each registry's `Registration::validate` checks a [`Registered`] with
//! [`Registered::check`] and then layers its own genuine constraints on top (Consul's
//! metadata keys, etcd's `/`-separated Go targets, Nacos's groups, clusters and
//! weights). Rules are checked before anything goes over the network, so a bad name
//! fails at once with a message naming the field, the value and the rule, instead of a
//! registration that succeeds but is not discoverable (Consul only logs a warning for a
//! name its DNS interface cannot serve). Metadata values never appear in a message.
//!
//! The rules:
//! - **service name:** a DNS label ([`NAME_RULE`]); with `allow_non_dns_name(true)`,
//!   which every registry offers, underscores and dots too ([`NON_DNS_NAME_RULE`]).
//! - **instance ID**, where the registry takes one: [`ID_RULE`].
//! - **metadata:** at most 64 pairs; keys of 1 to 128 printable ASCII characters
//!   without spaces; values at most 512 bytes without control characters.
//! - **advertised address:** see [`address`]: port 0 and a wildcard `advertise` are
//!   refused, a wildcard bind is replaced by the address of the interface that routes
//!   towards the registry.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::error::{Error, Result};

pub(crate) mod address;

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
        return Err(Error::config(format!("instance ID is empty; {ID_RULE}")));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::config(format!(
            "instance ID `{id}` is {} bytes long; {ID_RULE}",
            id.len()
        )));
    }
    if let Some(c) = id.chars().find(|c| !is_id_char(*c)) {
        return Err(Error::config(format!(
            "instance ID `{id}` contains {c:?}; {ID_RULE}"
        )));
    }
    Ok(())
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

/// Checks metadata against the shared rule: at most [`MAX_META_PAIRS`] pairs; keys of
/// 1 to [`MAX_META_KEY_LEN`] printable ASCII characters without spaces (dots included,
/// as in Nacos's own `preserved.heart.beat.interval`); values at most
/// [`MAX_META_VALUE_LEN`] bytes without control characters. Registries layer stricter
/// key rules on top (Consul's).
pub(crate) fn meta(meta: &BTreeMap<String, String>) -> Result<()> {
    if meta.len() > MAX_META_PAIRS {
        return Err(Error::config(format!(
            "{} service metadata pairs; at most {MAX_META_PAIRS} are allowed",
            meta.len()
        )));
    }
    for (key, value) in meta {
        if key.is_empty()
            || key.len() > MAX_META_KEY_LEN
            || !key.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(Error::config(format!(
                "service metadata key `{}` must be 1 to {MAX_META_KEY_LEN} printable ASCII \
                 characters without spaces",
                key.escape_debug()
            )));
        }
        if value.len() > MAX_META_VALUE_LEN || value.chars().any(char::is_control) {
            return Err(Error::config(format!(
                "service metadata value of `{key}` must be at most {MAX_META_VALUE_LEN} bytes \
                 without control characters"
            )));
        }
    }
    Ok(())
}

/// What every registration is checked for, whatever the registry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Registered<'a> {
    /// The service name.
    pub(crate) name: &'a str,
    /// `allow_non_dns_name(true)`: underscores and dots allowed in `name`.
    pub(crate) allow_non_dns_name: bool,
    /// The instance ID, when one was given.
    pub(crate) id: Option<&'a str>,
    pub(crate) meta: &'a BTreeMap<String, String>,
    /// Where the server is bound.
    pub(crate) bind: SocketAddr,
    /// The address given to advertise instead of the bound one.
    pub(crate) advertise: Option<IpAddr>,
}

// === impl Registered ===

impl Registered<'_> {
    /// Checks the name, the ID, the metadata and the address, in this order.
    ///
    /// # Errors
    ///
    /// A configuration error naming the field and the value: the first rule broken.
    pub(crate) fn check(&self) -> Result<()> {
        name(self.name, self.allow_non_dns_name)?;
        self.check_all_but_name()
    }

    /// Checks the ID, the metadata and the address: for a registry that checks the
    /// name itself because its names extend the rule (etcd's Go targets, segments
    /// under the rule joined by `/`).
    pub(crate) fn check_all_but_name(&self) -> Result<()> {
        if let Some(id) = self.id {
            instance_id(id)?;
        }
        meta(self.meta)?;
        address::check(self.bind, self.advertise)
    }
}

/// Checks a service name: [`service_name`], or with the opt-in
/// [`non_dns_service_name`].
pub(crate) fn name(name: &str, allow_non_dns_name: bool) -> Result<()> {
    if allow_non_dns_name {
        non_dns_service_name(name)
    } else {
        service_name(name)
    }
}

/// Logs, once per registration, that `name` was let through by `allow_non_dns_name`:
/// nothing that reads names as DNS labels (Consul's DNS interface, DNS-based clients)
/// can serve it.
pub(crate) fn warn_if_not_dns(registry: &'static str, name: &str) {
    if !is_dns_name(name) {
        tracing::warn!(
            registry,
            service = %name,
            "registering a service name DNS cannot carry (allowed by `allow_non_dns_name`); \
             move its clients to a name of letters, digits and dashes"
        );
    }
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
mod tests;
