//! Metadata filters for the discoveries of registries without server-side filtering
//! (etcd, Nacos): equality on entries, or any predicate.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::Discovery;

type Predicate = Arc<dyn Fn(&BTreeMap<String, String>) -> bool + Send + Sync>;

/// What a discovery builder collected: entries that must match, and predicates.
#[derive(Clone, Default)]
pub(crate) struct MetaFilter {
    entries: Vec<(String, String)>,
    predicates: Vec<Predicate>,
}

// === impl MetaFilter ===

impl MetaFilter {
    pub(crate) fn with_entry(mut self, key: String, value: String) -> Self {
        self.entries.push((key, value));
        self
    }

    pub(crate) fn with(
        mut self,
        keep: impl Fn(&BTreeMap<String, String>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.predicates.push(Arc::new(keep));
        self
    }

    /// Whether `meta` passes every entry and predicate.
    pub(crate) fn accepts(&self, meta: &BTreeMap<String, String>) -> bool {
        self.entries
            .iter()
            .all(|(k, v)| meta.get(k).is_some_and(|m| m == v))
            && self.predicates.iter().all(|keep| keep(meta))
    }

    /// `discovery`, filtered when anything is set.
    pub(crate) fn apply(self, discovery: Discovery) -> Discovery {
        if self.entries.is_empty() && self.predicates.is_empty() {
            return discovery;
        }
        discovery.with_filter(move |instance| self.accepts(instance.meta()))
    }
}

impl fmt::Debug for MetaFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaFilter")
            .field("entries", &self.entries)
            .field("predicates", &self.predicates.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_predicates_must_all_accept() {
        let meta: BTreeMap<String, String> =
            [("version".into(), "v2".into()), ("zone".into(), "a".into())].into();
        let none = MetaFilter::default();
        assert!(none.accepts(&meta));
        let v2 = MetaFilter::default().with_entry("version".into(), "v2".into());
        assert!(v2.accepts(&meta));
        assert!(!v2.accepts(&BTreeMap::new()));
        let both = v2.clone().with(|m| m.get("zone").is_some_and(|z| z == "b"));
        assert!(!both.accepts(&meta));
        let v1 = MetaFilter::default().with_entry("version".into(), "v1".into());
        assert!(!v1.accepts(&meta));
    }
}
