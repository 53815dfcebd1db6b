//! [`Seen`]: what a service config watch yielded last, so that it yields changes only.

use crate::error::Result;

/// A resolution's document, or why there is none to take; yielded as a
/// [`ConfigUpdate`](crate::source::ConfigUpdate).
pub(super) type Outcome = Result<Option<String>>;

/// What the watch yielded last, so that it yields changes only.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// The last document: `None` before the first.
    document: Option<Option<String>>,
    /// The message of the last error yielded since the last good answer.
    error: Option<String>,
}

// === impl Seen ===

impl Seen {
    /// What to yield for `outcome`: a document that differs from the last one, or an
    /// error that differs from the last one since the last good answer. An error
    /// keeps the last document (the channel keeps it too), so the same document
    /// after an error is not yielded again.
    pub(super) fn update(&mut self, outcome: Outcome) -> Option<Outcome> {
        match outcome {
            Ok(document) => {
                self.error = None;
                if self.document.as_ref() == Some(&document) {
                    return None;
                }
                self.document = Some(document.clone());
                Some(Ok(document))
            }
            Err(error) => {
                let message = error.to_string();
                if self.error.as_ref() == Some(&message) {
                    return None;
                }
                self.error = Some(message);
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn doc(s: &str) -> Outcome {
        Ok(Some(s.to_owned()))
    }

    fn shown(update: Option<Outcome>) -> Option<String> {
        update.map(|u| match u {
            Ok(d) => format!("{d:?}"),
            Err(e) => e.to_string(),
        })
    }

    #[test]
    fn yields_changes_only() {
        let mut seen = Seen::default();
        let down = || Err(Error::timeout("resolving TXT x"));
        let steps: [(Outcome, Option<&str>); 10] = [
            (Ok(None), Some("None")),
            (Ok(None), None),
            (doc("a"), Some(r#"Some("a")"#)),
            (doc("a"), None),
            (down(), Some("timed out: resolving TXT x")),
            (down(), None),
            // The document the channel kept through the failures is not repeated.
            (doc("a"), None),
            (down(), Some("timed out: resolving TXT x")),
            (doc("b"), Some(r#"Some("b")"#)),
            (Ok(None), Some("None")),
        ];
        for (i, (outcome, want)) in steps.into_iter().enumerate() {
            assert_eq!(shown(seen.update(outcome)).as_deref(), want, "step {i}");
        }
    }

    #[test]
    fn the_first_answer_is_always_yielded() {
        let mut seen = Seen::default();
        assert!(seen.update(Err(Error::timeout("x"))).is_some());
        assert!(matches!(seen.update(Ok(None)), Some(Ok(None))));
    }
}
