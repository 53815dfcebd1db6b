//! Go's `encoding/json` syntax error texts for what serde_json refused.

/// Go's text for a JSON syntax error found by serde at `e`'s position.
pub(super) fn go_syntax_error(body: &[u8], e: &serde_json::Error) -> String {
    if e.classify() == serde_json::error::Category::Eof {
        return "unexpected EOF".to_owned();
    }
    let Some(c) = char_at(body, e.line(), e.column()) else {
        return "unexpected EOF".to_owned();
    };
    let msg = e.to_string();
    let literal = literal_context(body, e.line(), e.column());
    let context = if let Some(literal) = &literal {
        literal.as_str()
    } else if msg.starts_with("expected `:`") {
        "after object key"
    } else if msg.starts_with("expected `,` or `}`") {
        "after object key:value pair"
    } else if msg.starts_with("expected `,` or `]`") {
        "after array element"
    } else if msg.starts_with("key must be a string") {
        "looking for beginning of object key string"
    } else if msg.starts_with("control character") || msg.starts_with("invalid escape") {
        "in string literal"
    } else {
        "looking for beginning of value"
    };
    let quoted = match c {
        '\'' => "'\\''".to_owned(),
        '"' => "'\"'".to_owned(),
        c if c.is_control() => format!("'\\x{:02x}'", c as u32),
        c => format!("'{c}'"),
    };
    format!("invalid character {quoted} {context}")
}

/// Inside `null`, `true` or `false` gone wrong (`nul`+`x`): Go's `in literal null
/// (expecting 'l')`.
fn literal_context(body: &[u8], line: usize, column: usize) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let row = text.split('\n').nth(line.checked_sub(1)?)?.as_bytes();
    let at = column.checked_sub(1)?.min(row.len());
    let start = row[..at]
        .iter()
        .rposition(|b| !b.is_ascii_alphabetic())
        .map_or(0, |p| p + 1);
    let literal = match row.get(start)? {
        b'n' => "null",
        b't' => "true",
        b'f' => "false",
        _ => return None,
    };
    let expecting = literal.as_bytes().get(at - start)?;
    if start == at || row.get(start..at)? != &literal.as_bytes()[..at - start] {
        return None;
    }
    Some(format!(
        "in literal {literal} (expecting '{}')",
        *expecting as char
    ))
}

/// The character at serde's 1-based line and column (the column counts bytes).
fn char_at(body: &[u8], line: usize, column: usize) -> Option<char> {
    let text = String::from_utf8_lossy(body);
    let row = text.split('\n').nth(line.checked_sub(1)?)?;
    let at = column.saturating_sub(1);
    row.get(at..)
        .or_else(|| row.get(at.saturating_sub(1)..))?
        .chars()
        .next()
}
