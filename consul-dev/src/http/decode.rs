//! Decoding request bodies as Consul's `lib.DecodeJSON` does: unknown fields are
//! rejected, keys match case-insensitively (and in snake_case), durations are Go
//! duration strings or nanosecond numbers.

use std::time::Duration;

use serde_json::{Map, Value};

mod syntax;

use syntax::go_syntax_error;

/// A decoded JSON object whose keys were mapped onto a struct's field names.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    map: Map<String, Value>,
    type_name: &'static str,
}

/// Why a body could not be decoded: the text after `Request decode failed: `.
pub(crate) type DecodeResult<T> = Result<T, String>;

/// Maps `value`'s keys onto `fields` (Go field names), rejecting unknown keys.
pub(crate) fn fields(
    value: &Value,
    type_name: &'static str,
    names: &[&str],
) -> DecodeResult<Fields> {
    let obj = match value {
        Value::Object(obj) => obj,
        Value::Null => {
            return Ok(Fields {
                map: Map::new(),
                type_name,
            });
        }
        other => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type structs.{type_name}",
                kind_of(other)
            ));
        }
    };
    let mut map = Map::new();
    for (key, v) in obj {
        let norm: String = key
            .chars()
            .filter(|c| *c != '_')
            .collect::<String>()
            .to_lowercase();
        let field = names
            .iter()
            .find(|n| n.to_lowercase() == norm)
            .ok_or_else(|| format!("json: unknown field \"{key}\""))?;
        map.insert((*field).to_owned(), v.clone());
    }
    Ok(Fields { map, type_name })
}

/// A field of a JSON object kept as sent, its key matched as `lib.DecodeJSON`
/// matches keys (any case, `_` ignored); `null` is absent.
pub(crate) fn field_of<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.replace('_', "").eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

/// The JSON kind Go's decoder names in its type errors.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// === impl Fields ===

impl Fields {
    fn type_error(&self, field: &str, v: &Value, go_type: &str) -> String {
        format!(
            "json: cannot unmarshal {} into Go struct field {}.{field} of type {go_type}",
            kind_of(v),
            self.type_name
        )
    }

    /// The raw value of a field, if present and not null.
    pub(crate) fn raw(&self, field: &str) -> Option<&Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    pub(crate) fn string(&self, field: &str) -> DecodeResult<String> {
        match self.raw(field) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(self.type_error(field, v, "string")),
        }
    }

    pub(crate) fn boolean(&self, field: &str) -> DecodeResult<bool> {
        match self.raw(field) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.type_error(field, v, "bool")),
        }
    }

    pub(crate) fn int(&self, field: &str) -> DecodeResult<i64> {
        match self.raw(field) {
            None => Ok(0),
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| self.type_error(field, &Value::Null, "int")),
            Some(v) => Err(self.type_error(field, v, "int")),
        }
    }

    pub(crate) fn strings(&self, field: &str) -> DecodeResult<Vec<String>> {
        match self.raw(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.type_error(field, other, "string")),
                })
                .collect(),
            Some(v) => Err(self.type_error(field, v, "[]string")),
        }
    }

    pub(crate) fn string_map(
        &self,
        field: &str,
    ) -> DecodeResult<std::collections::BTreeMap<String, String>> {
        match self.raw(field) {
            None => Ok(Default::default()),
            Some(Value::Object(obj)) => obj
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Err(self.type_error(field, other, "string")),
                })
                .collect(),
            Some(v) => Err(self.type_error(field, v, "map[string]string")),
        }
    }

    /// A Go duration string or a number of nanoseconds.
    pub(crate) fn duration(&self, field: &str) -> DecodeResult<Option<Duration>> {
        match self.raw(field) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                let nanos = n.as_f64().unwrap_or(0.0).max(0.0);
                Ok(Some(Duration::from_nanos(nanos as u64)))
            }
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => parse_go_duration(s)
                .map(Some)
                .ok_or_else(|| go_duration_error(s)),
            Some(v) => Err(self.type_error(field, v, "time.Duration")),
        }
    }
}

/// Parses Go's `time.ParseDuration` grammar (`300ms`, `1.5h`, `1m30s`, `-2s`, `0`).
/// Negative durations come back as zero.
pub(crate) fn parse_go_duration(s: &str) -> Option<Duration> {
    let (neg, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * factor;
        rest = &rest[unit_len..];
    }
    // Go's durations are int64 nanoseconds: more is an invalid duration.
    if total > i64::MAX as f64 {
        return None;
    }
    if neg {
        return Some(Duration::ZERO);
    }
    Some(Duration::from_nanos(total as u64))
}

/// Go's `time.ParseDuration` error text for a string [`parse_go_duration`] refused:
/// `time: missing unit in duration "10"`, `time: unknown unit "x" in duration "10x"`
/// or `time: invalid duration "abc"`.
pub(crate) fn go_duration_error(s: &str) -> String {
    let quoted = format!("{s:?}");
    let mut rest = s.strip_prefix(['-', '+']).unwrap_or(s);
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if rest[..num_len].trim_matches('.').is_empty() {
            break;
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        match unit {
            "" => return format!("time: missing unit in duration {quoted}"),
            "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h" => {}
            _ => return format!("time: unknown unit {unit:?} in duration {quoted}"),
        }
        rest = &rest[unit_len..];
    }
    format!("time: invalid duration {quoted}")
}

/// Parses a request body as JSON as Go's `json.Decoder.Decode` does: an empty body
/// decodes as `null`, only the first value is read (trailing bytes are ignored), and
/// syntax errors read as Go's (`unexpected EOF`, `invalid character 'x' looking for
/// beginning of value`).
pub(crate) fn body_json(body: &[u8]) -> DecodeResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    match values.next() {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(go_syntax_error(body, &e)),
        None => Ok(Value::Null),
    }
}

#[cfg(test)]
mod tests;
