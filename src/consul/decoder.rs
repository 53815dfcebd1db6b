//! [`HealthDecoder`]: decodes successive `/v1/health/service` answers of one watch,
//! decoding only the entries whose bytes changed since the previous answer.
//!
//! A blocking query returns the whole list every time, and usually one entry (or
//! none) differs from the last answer. Scanning 5,000 entries with serde costs more
//! than everything else the watch does, so the decoder remembers each entry of the
//! previous answer by a 128-bit hash of its bytes and its length. Reading the next
//! answer it first tries, at each position, the entry that followed the previous one
//! last time: when the bytes there hash the same and are followed by `,` or `]`, they
//! are that entry, already validated and decoded. Only where the guess fails does
//! serde parse (one entry, then the guess resumes after it), so an answer with one
//! change costs one hashing pass over the body plus one entry's decode.
//!
//! The hash is keyed with random seeds per decoder, so a registrant cannot craft an
//! entry that collides with another; an accidental collision of 128 bits is not a
//! practical concern.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use super::types::{AddressKind, HealthFilter, ServiceEntry};
use crate::error::{Error, Result};
use crate::instance::Instance;

/// Decodes the successive answers of one `/v1/health/service/:service` watch,
/// reusing what it decoded from entries whose bytes did not change. What a
/// [`Discovery`](super::Discovery) runs.
///
/// Each answer decodes to the same instances as `decode_health` would give, with the
/// same rules (`address`, the health filter, undialable entries skipped with a
/// warning, logged once per distinct entry).
///
/// Not part of the API: public for the crate's benchmarks only, and may change in
/// any release.
///
/// ```
/// use tonic_discovery::consul::{AddressKind, Decoded, HealthDecoder, HealthFilter};
///
/// let body = br#"[{"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":{"ID":"a","Port":9000}}]"#;
/// let mut decoder = HealthDecoder::new(AddressKind::Service, HealthFilter::Passing);
/// let Decoded::Changed(instances) = decoder.decode(body)? else { unreachable!() };
/// assert_eq!(instances[0].authority(), "10.0.0.1:9000");
/// assert!(matches!(decoder.decode(body)?, Decoded::Unchanged));
/// # Ok::<(), tonic_discovery::Error>(())
/// ```
#[doc(hidden)]
pub struct HealthDecoder {
    kind: AddressKind,
    keep: HealthFilter,
    seeds: [foldhash::quality::RandomState; 2],
    /// The previous answer's entries, in order; `None` before the first.
    order: Option<Vec<Seen>>,
    /// Each distinct entry of the previous answer, by hash.
    cache: HashMap<u128, Cached, BuildHasherDefault<Prehashed>>,
}

/// An entry of the previous answer: where it was, and what it decoded to (`None`:
/// skipped as not passing or undialable).
#[derive(Debug)]
struct Cached {
    at: usize,
    instance: Option<Instance>,
}

/// What `HealthDecoder::decode` found (benchmarks only, as the decoder).
#[doc(hidden)]
#[derive(Debug)]
#[non_exhaustive]
pub enum Decoded {
    /// The same entries, in the same order, as the previous answer.
    Unchanged,
    /// The instances of this answer (in the answer's order).
    Changed(Vec<Instance>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    hash: u128,
    len: usize,
}

// === impl HealthDecoder ===

impl HealthDecoder {
    /// A decoder with no previous answer, dialing `kind`'s address of the entries
    /// `keep` admits.
    pub fn new(kind: AddressKind, keep: HealthFilter) -> Self {
        HealthDecoder {
            kind,
            keep,
            seeds: Default::default(),
            order: None,
            cache: HashMap::default(),
        }
    }

    /// Decodes an answer, comparing it with the previous successful one.
    ///
    /// # Errors
    ///
    /// A decode error when the body is not a JSON array of entries (or `null`); the
    /// previous answer stays the reference for the next call.
    pub fn decode(&mut self, body: &[u8]) -> Result<Decoded> {
        let mut fresh = HashMap::default();
        let order = self.scan(body, &mut fresh)?;
        if fresh.is_empty() && self.order.as_ref() == Some(&order) {
            return Ok(Decoded::Unchanged);
        }
        let mut cache: HashMap<_, Cached, _> = HashMap::default();
        cache.reserve(order.len());
        let mut out = Vec::with_capacity(order.len());
        for (at, seen) in order.iter().enumerate() {
            let instance = match cache.get_mut(&seen.hash) {
                Some(listed_twice) => {
                    listed_twice.at = at;
                    listed_twice.instance.clone()
                }
                None => {
                    let instance = match self.cache.remove(&seen.hash) {
                        Some(old) => old.instance,
                        None => fresh.remove(&seen.hash).flatten(),
                    };
                    let copy = instance.clone();
                    cache.insert(seen.hash, Cached { at, instance });
                    copy
                }
            };
            out.extend(instance);
        }
        self.order = Some(order);
        self.cache = cache;
        Ok(Decoded::Changed(out))
    }

    /// Walks the body: the entries in order, and the decoded new ones in `fresh`.
    fn scan(&self, body: &[u8], fresh: &mut Fresh) -> Result<Vec<Seen>> {
        let previous = self.order.as_deref().unwrap_or_default();
        let mut pos = skip_ws(body, 0);
        let mut order = Vec::with_capacity(previous.len() + 1);
        if body[pos..].starts_with(b"null") {
            return expect_end(body, pos + 4).map(|()| order);
        }
        if body.get(pos) != Some(&b'[') {
            return Err(malformed("expected an array"));
        }
        pos = skip_ws(body, pos + 1);
        if body.get(pos) == Some(&b']') {
            return expect_end(body, pos + 1).map(|()| order);
        }
        // The previous answer's entry expected next.
        let mut next = 0;
        loop {
            let seen = match previous.get(next).filter(|s| self.is_at(body, pos, s)) {
                Some(seen) => *seen,
                None => self.parse_at(body, pos, fresh)?,
            };
            next = match previous.get(next) {
                Some(s) if *s == seen => next + 1,
                // Resynchronise after an entry the guess missed.
                _ => self.cache.get(&seen.hash).map_or(next, |c| c.at + 1),
            };
            order.push(seen);
            pos = skip_ws(body, pos + seen.len);
            match body.get(pos) {
                Some(b',') => pos = skip_ws(body, pos + 1),
                Some(b']') => return expect_end(body, pos + 1).map(|()| order),
                _ => return Err(malformed("expected `,` or `]` after an entry")),
            }
        }
    }

    /// Whether the bytes at `pos` are the entry `seen`.
    fn is_at(&self, body: &[u8], pos: usize, seen: &Seen) -> bool {
        let Some(bytes) = body.get(pos..pos + seen.len) else {
            return false;
        };
        let after = skip_ws(body, pos + seen.len);
        matches!(body.get(after), Some(b',' | b']')) && self.hash(bytes) == seen.hash
    }

    /// Parses the entry at `pos`; decodes it unless an equal one was decoded before.
    fn parse_at(&self, body: &[u8], pos: usize, fresh: &mut Fresh) -> Result<Seen> {
        // A stream deserializer, for the offset where the entry ends.
        let mut stream = serde_json::Deserializer::from_slice(&body[pos..]).into_iter();
        let entry: ServiceEntry<'_> = match stream.next() {
            Some(entry) => entry.map_err(|e| Error::decode("health service answer", e))?,
            None => return Err(malformed("expected an entry")),
        };
        let len = stream.byte_offset();
        let seen = Seen {
            hash: self.hash(&body[pos..pos + len]),
            len,
        };
        if !self.cache.contains_key(&seen.hash) && !fresh.contains_key(&seen.hash) {
            fresh.insert(seen.hash, self.instance(entry));
        }
        Ok(seen)
    }

    fn instance(&self, entry: ServiceEntry<'_>) -> Option<Instance> {
        let kept = match self.keep {
            HealthFilter::Passing => entry.is_passing(),
            HealthFilter::PassingOrWarning => entry.is_passing_or_warning(),
            HealthFilter::Any => true,
        };
        if !kept {
            return None;
        }
        let (node, id) = (entry.node.node.clone(), entry.service.id.clone());
        entry
            .into_instance(&self.kind)
            .map_err(|reason| {
                tracing::warn!(node = %node, service_id = %id, %reason, "skipping undialable Consul instance");
            })
            .ok()
    }

    fn hash(&self, bytes: &[u8]) -> u128 {
        let [a, b] = &self.seeds;
        let (mut a, mut b) = (a.build_hasher(), b.build_hasher());
        a.write(bytes);
        b.write(bytes);
        (u128::from(a.finish()) << 64) | u128::from(b.finish())
    }
}

impl fmt::Debug for HealthDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthDecoder")
            .field("kind", &self.kind)
            .field("keep", &self.keep)
            .field("entries", &self.order.as_ref().map(Vec::len))
            .finish()
    }
}

type Fresh = HashMap<u128, Option<Instance>, BuildHasherDefault<Prehashed>>;

/// A hasher for keys that are hashes already: keeps the low 64 bits.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, i: u128) {
        self.0 = i as u64;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn skip_ws(body: &[u8], mut pos: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = body.get(pos) {
        pos += 1;
    }
    pos
}

fn expect_end(body: &[u8], pos: usize) -> Result<()> {
    if skip_ws(body, pos) == body.len() {
        Ok(())
    } else {
        Err(malformed("trailing characters"))
    }
}

fn malformed(what: &str) -> Error {
    Error::decode("health service answer", what.to_owned())
}

#[cfg(test)]
mod tests;
