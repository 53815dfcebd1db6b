//! Lexer and recursive-descent parser of filter expressions.

use super::{Expr, Op};

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
pub(crate) fn parse(src: &str) -> Result<Expr, String> {
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
        let negated_in = self.peek_word("not") && self.peek_word_at(1, "in");
        if self.peek_word("in") || negated_in {
            return self.value_in(first, negated_in);
        }
        let selector = match first {
            Tok::Word(w) => split_selector(&w)?,
            t => return Err(format!("1:{} expected a selector, found {t:?}", self.pos)),
        };
        let (op, value) = self.operator()?;
        Ok(Expr::Match {
            selector,
            op,
            value,
        })
    }

    /// `value in Selector` / `value not in Selector`, after the value.
    fn value_in(&mut self, first: Tok, negated: bool) -> Result<Expr, String> {
        let value = match first {
            Tok::Word(w) | Tok::Quoted(w) => w,
            t => return Err(format!("1:{} expected a value, found {t:?}", self.pos)),
        };
        self.pos += if negated { 2 } else { 1 };
        let selector = self.selector()?;
        let op = if negated {
            Op::NotContains
        } else {
            Op::Contains
        };
        Ok(Expr::Match {
            selector,
            op,
            value,
        })
    }

    /// The operator after a selector, and its value.
    fn operator(&mut self) -> Result<(Op, String), String> {
        Ok(match self.next()? {
            Tok::Eq => (Op::Eq, self.value()?),
            Tok::Ne => (Op::Ne, self.value()?),
            Tok::Word(w) if w == "contains" => (Op::Contains, self.value()?),
            Tok::Word(w) if w == "is" => {
                let negated = self.peek_word("not");
                self.pos += usize::from(negated);
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
