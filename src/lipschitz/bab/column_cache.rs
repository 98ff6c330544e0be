//! Rows and columns of a network's first affine layers that no domain can change (their prefix
//! has no ReLU), computed once per search and shared by the threads that bound sibling domains.
//! Each entry is a pure function of its key, so which thread fills it changes nothing.

use crate::bounds::Interval;
use std::collections::HashMap;
use std::sync::RwLock;

/// Intervals by (node, neuron), filled on first use.
#[derive(Default)]
pub struct ColumnCache(RwLock<HashMap<(usize, usize), Interval>>);

impl ColumnCache {
    /// The entry of `key`, if computed.
    pub fn get(&self, key: (usize, usize)) -> Option<Interval> {
        self.0.read().ok().and_then(|m| m.get(&key).cloned())
    }

    /// Stores the entry of `key` (a poisoned lock only loses the cache, never a value).
    pub fn insert(&self, key: (usize, usize), value: Interval) {
        if let Ok(mut m) = self.0.write() {
            m.insert(key, value);
        }
    }
}
