use serde_json::json;

use super::*;

fn entry() -> Value {
    json!({
        "Node": {"Node": "node1", "Meta": {"rack": "r1"}},
        "Service": {"Service": "echo", "Tags": ["v1", "primary"], "Meta": {"zone": "a"}},
        "Checks": [{"Status": "passing"}, {"Status": "warning"}],
    })
}

fn eval(src: &str) -> bool {
    parse(src).unwrap().eval(&entry())
}

#[test]
fn evaluates_common_forms() {
    assert!(eval("Service.Service == echo"));
    assert!(eval("Service.Service == \"echo\""));
    assert!(!eval("Service.Service != `echo`"));
    assert!(eval("\"v1\" in Service.Tags"));
    assert!(eval("v2 not in Service.Tags"));
    assert!(eval("Service.Tags contains primary"));
    assert!(eval("Service.Tags not contains v3"));
    assert!(eval("Service.Meta.zone == a"));
    assert!(eval("Service.Meta.missing is empty"));
    assert!(eval("Service.Tags is not empty"));
    assert!(eval("Checks.Status == warning"));
    assert!(eval(
        "not (Node.Node == other) and (Service.Meta.zone == b or Node.Meta.rack == r1)"
    ));
}

#[test]
fn rejects_malformed_expressions() {
    for bad in [
        "",
        "Service.Tags contains",
        "(Node.Node == a",
        "Node.Node = a",
        "a and",
        "\"x",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
}
