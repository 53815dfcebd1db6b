//! The registration inputs every registry must answer alike (one validation path), and
//! the check each registry's test runs them through.
#![allow(unreachable_pub)]

use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};

/// One input: service name, bound address, advertised address; and what the refusal
/// must name (`None`: accepted).
type Case = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

const CASES: &[Case] = &[
    ("echo-v2", "10.0.0.1:7", None, None),
    ("echo-v2", "0.0.0.0:7", None, None),
    (
        "echo_v2",
        "10.0.0.1:7",
        None,
        Some("`echo_v2` contains an underscore"),
    ),
    ("echo.v2", "10.0.0.1:7", None, Some("use `echo-v2` instead")),
    ("", "10.0.0.1:7", None, Some("service name is empty")),
    (
        "-echo",
        "10.0.0.1:7",
        None,
        Some("`-echo` starts or ends with a dash"),
    ),
    (
        "echo v2",
        "10.0.0.1:7",
        None,
        Some("`echo v2` contains ' '"),
    ),
    (
        "echo/v2",
        "10.0.0.1:7",
        None,
        Some("`echo/v2` contains '/'"),
    ),
    (
        "echo",
        "10.0.0.1:0",
        None,
        Some("port 0 (bind address 10.0.0.1:0)"),
    ),
    (
        "echo",
        "0.0.0.0:7",
        Some("0.0.0.0"),
        Some("wildcard address 0.0.0.0"),
    ),
    ("echo", "[::]:7", Some("::"), Some("wildcard address ::")),
];

/// Runs every case through a registry's `Registration`: `new`, `advertise` when the
/// case gives an address, then `validate`, and checks the answer; with the `consul`
/// feature, also that it is word for word Consul's (a registry may add a hint of its
/// own after it: etcd names the opt-in for Go targets after a refused `/`).
pub fn assert_same_answers<R, E: Display>(
    new: impl Fn(&'static str, SocketAddr) -> R,
    advertise: impl Fn(R, IpAddr) -> R,
    validate: impl Fn(R) -> Result<R, E>,
) {
    for &(name, bind, ip, refusal) in CASES {
        let bind: SocketAddr = bind.parse().unwrap();
        let ip = ip.map(|ip| ip.parse::<IpAddr>().unwrap());
        let registration = new(name, bind);
        let registration = match ip {
            Some(ip) => advertise(registration, ip),
            None => registration,
        };
        let got = validate(registration).map(drop).map_err(|e| e.to_string());
        match (&got, refusal) {
            (Ok(()), None) => {}
            (Err(e), Some(want)) => assert!(e.contains(want), "{name:?} {bind}: {e}"),
            _ => panic!("{name:?} {bind} {ip:?}: {got:?}, want a refusal naming {refusal:?}"),
        }
        #[cfg(feature = "consul")]
        match (&got, consul(name, bind, ip)) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(consul)) if e.starts_with(&consul) => {}
            (got, consul) => panic!("{name:?} {bind}: {got:?}, Consul answers {consul:?}"),
        }
    }
}

#[cfg(feature = "consul")]
fn consul(name: &str, bind: SocketAddr, advertise: Option<IpAddr>) -> Result<(), String> {
    let r = tonic_discovery::consul::Registration::new(name, bind);
    let r = match advertise {
        Some(ip) => r.advertise(ip),
        None => r,
    };
    r.validate().map(drop).map_err(|e| e.to_string())
}
