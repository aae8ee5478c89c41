//! Config diff for hot reload: which live instances to add, replace and remove so the
//! running set matches the database. Startup is the diff from an empty set: one path.

use std::collections::{BTreeMap, BTreeSet};

use crate::{ids::ConfigId, provider::ProviderSpec};

/// What has to happen to the live actor set to match a new one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigDiff {
    /// New (or re-enabled) configs.
    pub to_add: BTreeSet<ConfigId>,
    /// Configs whose settings changed: a new actor replaces the old one.
    pub to_replace: BTreeSet<ConfigId>,
    /// Configs deleted or disabled: their actors drain and stop.
    pub to_remove: BTreeSet<ConfigId>,
}

impl ConfigDiff {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.to_add.is_empty() && self.to_replace.is_empty() && self.to_remove.is_empty()
    }
}

/// Compares two live sets (enabled, valid configs only, so disabling one is a removal).
/// A config counts as changed when any setting differs; the version alone does not
/// matter (a no-op write keeps the actor and its limiter and breaker state).
pub fn diff(
    old: &BTreeMap<ConfigId, &ProviderSpec>,
    new: &BTreeMap<ConfigId, &ProviderSpec>,
) -> ConfigDiff {
    let mut out = ConfigDiff::default();
    for (id, next) in new {
        match old.get(id) {
            None => {
                out.to_add.insert(*id);
            }
            Some(previous) if previous != next => {
                out.to_replace.insert(*id);
            }
            Some(_) => {}
        }
    }
    out.to_remove = old
        .keys()
        .filter(|id| !new.contains_key(id))
        .copied()
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::provider::ProviderConfigDraft;

    fn spec(name: &str, priority: i64) -> ProviderSpec {
        serde_json::from_value::<ProviderConfigDraft>(
            serde_json::json!({"name": name, "provider": "mock", "priority": priority}),
        )
        .unwrap()
        .validate()
        .unwrap()
    }

    #[test]
    fn startup_is_the_diff_from_nothing() {
        let a = spec("a", 1);
        let b = spec("b", 1);
        let new = BTreeMap::from([(ConfigId(1), &a), (ConfigId(2), &b)]);
        let d = diff(&BTreeMap::new(), &new);
        assert_eq!(d.to_add, BTreeSet::from([ConfigId(1), ConfigId(2)]));
        assert!(d.to_replace.is_empty() && d.to_remove.is_empty());
    }

    #[test]
    fn only_what_changed_is_touched() {
        let (a, b, c, b2, d) = (
            spec("a", 1),
            spec("b", 1),
            spec("c", 1),
            spec("b", 9),
            spec("d", 1),
        );
        let old = BTreeMap::from([(ConfigId(1), &a), (ConfigId(2), &b), (ConfigId(3), &c)]);
        let new = BTreeMap::from([(ConfigId(1), &a), (ConfigId(2), &b2), (ConfigId(4), &d)]);
        let result = diff(&old, &new);
        assert_eq!(result.to_add, BTreeSet::from([ConfigId(4)]));
        assert_eq!(result.to_replace, BTreeSet::from([ConfigId(2)]));
        assert_eq!(result.to_remove, BTreeSet::from([ConfigId(3)]));
        assert!(diff(&new, &new).is_empty());
    }

    proptest! {
        #[test]
        fn applying_the_diff_reaches_the_new_set(
            old_ids in proptest::collection::btree_map(0i64..30, 0i64..3, 0..20),
            new_ids in proptest::collection::btree_map(0i64..30, 0i64..3, 0..20),
        ) {
            let specs: Vec<ProviderSpec> = (0..3).map(|p| spec("x", p)).collect();
            let old: BTreeMap<ConfigId, &ProviderSpec> = old_ids.iter().map(|(id, p)| (ConfigId(*id), &specs[*p as usize])).collect();
            let new: BTreeMap<ConfigId, &ProviderSpec> = new_ids.iter().map(|(id, p)| (ConfigId(*id), &specs[*p as usize])).collect();
            let d = diff(&old, &new);
            let mut live: BTreeMap<ConfigId, &ProviderSpec> = old.clone();
            for id in &d.to_remove { live.remove(id); }
            for id in d.to_add.iter().chain(&d.to_replace) { live.insert(*id, new[id]); }
            prop_assert_eq!(&live, &new);
            // Untouched instances are exactly the unchanged ones.
            for (id, s) in &old {
                let touched = d.to_remove.contains(id) || d.to_replace.contains(id);
                prop_assert_eq!(touched, new.get(id) != Some(s));
            }
        }
    }
}
