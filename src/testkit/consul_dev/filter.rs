//! The common forms of go-bexpr filter expressions (`?filter=`), evaluated on the
//! JSON an endpoint returns: `==`, `!=`, `in`, `not in`, `contains`,
//! `not contains`, `is empty`, `is not empty`, `and`, `or`, `not`, parentheses.
//! A selector crossing a list (`Checks.Status`) matches when any element does.

use serde_json::Value;

/// A parsed filter expression.
#[derive(Debug, Clone)]
pub(super) enum Expr {
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
pub(super) enum Op {
    Eq,
    Ne,
    Contains,
    NotContains,
    Empty,
    NotEmpty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Quoted(String),
    LParen,
    RParen,
    Eq,
    Ne,
}

/// Parses an expression; the error text follows Consul's 400 answers.
pub(super) fn parse(src: &str) -> Result<Expr, String> {
    let toks = lex(src)?;
    let mut p = Parser { toks, pos: 0 };
    let expr = p.or()?;
    match p.toks.get(p.pos) {
        None => Ok(expr),
        Some(t) => Err(format!("1:{} unexpected token {t:?}", p.pos + 1)),
    }
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push(Tok::LParen),
            ')' => out.push(Tok::RParen),
            '=' | '!' => match chars.next() {
                Some((_, '=')) => out.push(if c == '=' { Tok::Eq } else { Tok::Ne }),
                _ => return Err(format!("1:{} invalid operator", i + 1)),
            },
            '"' | '`' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("1:{} unterminated string", i + 1)),
                        Some((_, ch)) if ch == c => break,
                        Some((_, '\\')) if c == '"' => {
                            if let Some((_, e)) = chars.next() {
                                s.push(e);
                            }
                        }
                        Some((_, ch)) => s.push(ch),
                    }
                }
                out.push(Tok::Quoted(s));
            }
            _ => {
                let mut s = String::from(c);
                while let Some((_, ch)) = chars.peek() {
                    if ch.is_whitespace() || matches!(ch, '(' | ')' | '=' | '!' | '"') {
                        break;
                    }
                    s.push(*ch);
                    chars.next();
                }
                out.push(Tok::Word(s));
            }
        }
    }
    if out.is_empty() {
        return Err("1:1 no match found, expected an expression".to_owned());
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(x)) if x == w)
    }

    fn peek_word_at(&self, off: usize, w: &str) -> bool {
        matches!(self.toks.get(self.pos + off), Some(Tok::Word(x)) if x == w)
    }

    fn next(&mut self) -> Result<Tok, String> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t.ok_or_else(|| format!("1:{} unexpected end of expression", self.pos))
    }

    fn expect_word(&mut self, w: &str) -> Result<(), String> {
        match self.next()? {
            Tok::Word(x) if x == w => Ok(()),
            t => Err(format!("1:{} expected {w:?}, found {t:?}", self.pos)),
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while self.peek_word("and") {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.toks.get(self.pos) == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.or()?;
            match self.next()? {
                Tok::RParen => return Ok(e),
                t => return Err(format!("1:{} expected \")\", found {t:?}", self.pos)),
            }
        }
        self.matcher()
    }

    fn value(&mut self) -> Result<String, String> {
        match self.next()? {
            Tok::Word(w) | Tok::Quoted(w) => Ok(w),
            t => Err(format!("1:{} expected a value, found {t:?}", self.pos)),
        }
    }

    fn matcher(&mut self) -> Result<Expr, String> {
        let first = self.next()?;
        // `value in Selector` / `value not in Selector`
        let negated_in = self.peek_word("not") && self.peek_word_at(1, "in");
        if self.peek_word("in") || negated_in {
            let value = match first {
                Tok::Word(w) | Tok::Quoted(w) => w,
                t => return Err(format!("1:{} expected a value, found {t:?}", self.pos)),
            };
            self.pos += if negated_in { 2 } else { 1 };
            let selector = self.selector()?;
            let op = if negated_in {
                Op::NotContains
            } else {
                Op::Contains
            };
            return Ok(Expr::Match {
                selector,
                op,
                value,
            });
        }
        let selector = match first {
            Tok::Word(w) => split_selector(&w)?,
            t => return Err(format!("1:{} expected a selector, found {t:?}", self.pos)),
        };
        let (op, value) = match self.next()? {
            Tok::Eq => (Op::Eq, self.value()?),
            Tok::Ne => (Op::Ne, self.value()?),
            Tok::Word(w) if w == "contains" => (Op::Contains, self.value()?),
            Tok::Word(w) if w == "is" => {
                let negated = self.peek_word("not");
                if negated {
                    self.pos += 1;
                }
                self.expect_word("empty")?;
                (
                    if negated { Op::NotEmpty } else { Op::Empty },
                    String::new(),
                )
            }
            Tok::Word(w) if w == "not" => {
                self.expect_word("contains")?;
                (Op::NotContains, self.value()?)
            }
            t => return Err(format!("1:{} expected an operator, found {t:?}", self.pos)),
        };
        Ok(Expr::Match {
            selector,
            op,
            value,
        })
    }

    fn selector(&mut self) -> Result<Vec<String>, String> {
        match self.next()? {
            Tok::Word(w) => split_selector(&w),
            t => Err(format!("1:{} expected a selector, found {t:?}", self.pos)),
        }
    }
}

fn split_selector(w: &str) -> Result<Vec<String>, String> {
    let parts: Vec<String> = w.split('.').map(str::to_owned).collect();
    if parts.iter().any(String::is_empty) {
        return Err(format!("Selector {w:?} is not valid"));
    }
    Ok(parts)
}

// === evaluation ===

impl Expr {
    /// Whether `item` passes the filter.
    pub(super) fn eval(&self, item: &Value) -> bool {
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
pub(super) fn apply(
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

#[cfg(test)]
mod tests;
