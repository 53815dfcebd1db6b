//! `NodeService.Validate`: the Connect-proxy, gateway and Connect-native rules the
//! agent applies at registration, with go-multierror's text (`Validation failed: 1
//! error occurred:\n\t* …\n\n`).

use crate::store::model::Service;

/// Nested sidecar validation: the agent owns the sidecar's ID, and a sidecar has
/// no sidecar of its own.
fn sidecar(svc: &Service, errors: &mut Vec<String>) {
    use crate::http::decode::field_of as field;
    let Some(def) = svc
        .connect
        .as_ref()
        .and_then(|c| field(c, "SidecarService"))
    else {
        return;
    };
    if field(def, "ID").is_some_and(|id| id.as_str() != Some("")) {
        errors.push(
            "A SidecarService cannot specify an ID as this is managed by the agent".to_owned(),
        );
    }
    let nested = field(def, "Connect").and_then(|c| field(c, "SidecarService"));
    if nested.is_some() {
        errors.push("A SidecarService cannot have a nested SidecarService".to_owned());
    }
}

/// The problems `NodeService.Validate` finds, in its order.
pub(crate) fn node_service(svc: &Service) -> Vec<String> {
    let mut errors = Vec::new();
    let proxy = |field: &str| -> String {
        svc.proxy
            .as_ref()
            .and_then(|p| p[field].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let native = svc
        .connect
        .as_ref()
        .and_then(|c| c["Native"].as_bool())
        .unwrap_or(false);
    let no_port = svc.port == 0 && svc.socket_path.is_empty();
    if svc.kind == "connect-proxy" {
        if no_port {
            errors.push(format!("Port or SocketPath must be set for a {}", svc.kind));
        }
        let destination = proxy("DestinationServiceName");
        if destination.trim().is_empty() {
            errors.push(
                "Proxy.DestinationServiceName must be non-empty for Connect proxy services"
                    .to_owned(),
            );
        }
        if destination == "*" {
            errors.push(
                "Proxy.DestinationServiceName must not be a wildcard for Connect proxy services"
                    .to_owned(),
            );
        }
        if native {
            errors.push("A Proxy cannot also be Connect Native, only typical services".to_owned());
        }
    }
    gateway(svc, &proxy, &mut errors);
    sidecar(svc, &mut errors);
    if native && no_port {
        errors.push("Port or SocketPath must be set for a Connect native service.".to_owned());
    }
    errors
}

fn gateway(svc: &Service, proxy: &dyn Fn(&str) -> String, errors: &mut Vec<String>) {
    let kind = svc.kind.as_str();
    let gateway = matches!(
        kind,
        "mesh-gateway" | "terminating-gateway" | "ingress-gateway" | "api-gateway"
    );
    if !gateway {
        return;
    }
    if svc.port == 0 && !matches!(kind, "ingress-gateway" | "api-gateway") {
        errors.push(format!("Port must be non-zero for a {kind}"));
    }
    for field in [
        "DestinationServiceName",
        "DestinationServiceID",
        "LocalServiceAddress",
    ] {
        if !proxy(field).is_empty() {
            errors.push(format!(
                "The Proxy.{field} configuration is invalid for a {kind}"
            ));
        }
    }
}

/// go-multierror's `Error()` text for `errors` (none: `None`).
pub(crate) fn multierror(errors: &[String]) -> Option<String> {
    let (first, rest) = errors.split_first()?;
    let count = errors.len();
    let noun = if count == 1 { "error" } else { "errors" };
    let mut out = format!("{count} {noun} occurred:\n\t* {first}");
    for e in rest {
        out.push_str("\n\t* ");
        out.push_str(e);
    }
    out.push_str("\n\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go_multierror() {
        assert_eq!(multierror(&[]), None);
        assert_eq!(
            multierror(&["a".to_owned()]).unwrap(),
            "1 error occurred:\n\t* a\n\n"
        );
        assert_eq!(
            multierror(&["a".to_owned(), "b".to_owned()]).unwrap(),
            "2 errors occurred:\n\t* a\n\t* b\n\n"
        );
    }
}
