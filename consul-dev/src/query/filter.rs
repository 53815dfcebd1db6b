//! The common forms of go-bexpr filter expressions (`?filter=`), evaluated on the
//! JSON an endpoint returns: `==`, `!=`, `in`, `not in`, `contains`,
//! `not contains`, `is empty`, `is not empty`, `and`, `or`, `not`, parentheses.
//! A selector crossing a list (`Checks.Status`) matches when any element does.

use serde_json::Value;

/// A parsed filter expression.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Match {
        selector: Vec<String>,
        op: Op,
        value: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Contains,
    NotContains,
    Empty,
    NotEmpty,
}

// === evaluation ===

impl Expr {
    /// Whether `item` passes the filter.
    pub(crate) fn eval(&self, item: &Value) -> bool {
        match self {
            Expr::And(a, b) => a.eval(item) && b.eval(item),
            Expr::Or(a, b) => a.eval(item) || b.eval(item),
            Expr::Not(e) => !e.eval(item),
            Expr::Match {
                selector,
                op,
                value,
            } => {
                let mut found = Vec::new();
                resolve(item, selector, &mut found);
                eval_match(&found, *op, value)
            }
        }
    }
}

/// Collects the values `path` selects; lists of objects fan out.
fn resolve<'a>(v: &'a Value, path: &[String], out: &mut Vec<&'a Value>) {
    let Some((head, rest)) = path.split_first() else {
        out.push(v);
        return;
    };
    match v {
        Value::Object(m) => {
            let field = m.get(head.as_str()).or_else(|| {
                m.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(head))
                    .map(|(_, v)| v)
            });
            if let Some(f) = field {
                resolve(f, rest, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| resolve(i, path, out)),
        _ => {}
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn contains(v: &Value, needle: &str) -> bool {
    match v {
        Value::Array(a) => a.iter().any(|i| text(i) == needle),
        Value::Object(o) => o.contains_key(needle),
        Value::String(s) => s.contains(needle),
        _ => false,
    }
}

fn eval_match(found: &[&Value], op: Op, value: &str) -> bool {
    match op {
        Op::Eq => found.iter().any(|v| text(v) == value),
        Op::Ne => !found.iter().any(|v| text(v) == value),
        Op::Contains => found.iter().any(|v| contains(v, value)),
        Op::NotContains => !found.iter().any(|v| contains(v, value)),
        Op::Empty => found.iter().all(|v| is_empty(v)),
        Op::NotEmpty => !found.iter().all(|v| is_empty(v)),
    }
}

/// Applies `?filter` to a list; `prefix` is the 400 text's start.
pub(crate) fn apply(
    filter: Option<&str>,
    items: Vec<Value>,
    prefix: &str,
) -> Result<Vec<Value>, String> {
    let Some(src) = filter.filter(|f| !f.trim().is_empty()) else {
        return Ok(items);
    };
    let expr = parse(src).map_err(|e| format!("{prefix}: {e}"))?;
    Ok(items.into_iter().filter(|i| expr.eval(i)).collect())
}

/// Applies `?filter` to the values of an object keyed by id (`/v1/agent/services`,
/// `/v1/agent/checks`) and returns the object of the entries kept.
pub(crate) fn apply_keyed(
    filter: Option<&str>,
    items: Vec<(String, Value)>,
) -> Result<Value, String> {
    let expr = match filter.filter(|f| !f.trim().is_empty()) {
        Some(src) => Some(parse(src).map_err(|e| format!("Failed to create filter: {e}"))?),
        None => None,
    };
    let kept = items
        .into_iter()
        .filter(|(_, v)| expr.as_ref().is_none_or(|e| e.eval(v)))
        .collect::<serde_json::Map<String, Value>>();
    Ok(Value::Object(kept))
}

mod parse;

pub(crate) use parse::parse;

#[cfg(test)]
mod tests;
