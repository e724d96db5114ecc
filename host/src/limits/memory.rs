//! The memory limit: every linear memory and table of an instance
//! counted together.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use wasmtime::ResourceLimiter;

/// The most table elements a plugin instance may have, all its tables
/// together: far more than any plugin's function tables need, far less
/// than would hurt the host.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// The most core instances, memories and tables a plugin may create: a
/// Rust plugin has a handful of each. The byte and element totals bound
/// what they hold; these bound the host's bookkeeping.
const MAX_INSTANCES: usize = 100;
const MAX_MEMORIES: usize = 100;
const MAX_TABLES: usize = 100;

/// Holds a plugin instance to its memory limit, counting all its linear
/// memories together (a component may hold several core instances, and a
/// core module several memories), and remembers a refusal so that the trap
/// that follows (Rust aborts when an allocation fails) can be told as what
/// it is.
pub(crate) struct MemoryLimiter {
    limit: usize,
    /// Bytes of linear memory granted so far, all memories together.
    memory: usize,
    /// Table elements granted so far, all tables together.
    table_elements: usize,
    refused: Option<usize>,
    /// Whether the shared budget (not this limiter's own limit) refused.
    refused_by_budget: bool,
    /// The budget shared with other instances (a gateway's total plugin
    /// memory), if any: every grant is taken from it too.
    shared: Option<Arc<MemoryBudget>>,
}

/// Linear memory shared out among many instances: the most all of them
/// may hold together. An instance's grants come back when it is dropped.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes granted now, all instances together.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The most all instances may hold together.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl MemoryLimiter {
    /// A limiter granting `limit` bytes of linear memory in all.
    pub(crate) fn new(limit: usize) -> Self {
        MemoryLimiter {
            limit,
            memory: 0,
            table_elements: 0,
            refused: None,
            refused_by_budget: false,
            shared: None,
        }
    }

    /// A limiter granting `limit` bytes, each of them also taken from
    /// `budget`.
    pub(crate) fn with_budget(limit: usize, budget: Arc<MemoryBudget>) -> Self {
        MemoryLimiter {
            shared: Some(budget),
            ..MemoryLimiter::new(limit)
        }
    }

    /// The limit, in bytes.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// The largest total a refused `memory.grow` asked for, if one was
    /// refused.
    pub(crate) fn refused(&self) -> Option<usize> {
        self.refused
    }

    /// The shared budget, when a growth within this limiter's own limit
    /// was refused because the budget was spent.
    pub(crate) fn spent_budget(&self) -> Option<&MemoryBudget> {
        self.shared.as_deref().filter(|_| self.refused_by_budget)
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        if let Some(budget) = &self.shared {
            budget.give_back(self.memory);
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Past the memory's own declared maximum the growth fails anyway,
        // after this call: grant (and count) nothing.
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        // `memory.grow` returns -1 beyond the limit, as WebAssembly lets a
        // host do; the plugin may cope with it.
        let total = self.memory.saturating_add(desired.saturating_sub(current));
        let over_own = total > self.limit;
        let over_shared = !over_own
            && self
                .shared
                .as_ref()
                .is_some_and(|budget| !budget.take(total - self.memory));
        if over_own || over_shared {
            self.refused = Some(self.refused.map_or(total, |d| d.max(total)));
            self.refused_by_budget |= over_shared;
            return Ok(false);
        }
        self.memory = total;
        Ok(true)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.table_elements.saturating_add(desired.saturating_sub(current));
        if total > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_budget_bounds_instances_together_and_comes_back() {
        let budget = MemoryBudget::new(100);
        let mut a = MemoryLimiter::with_budget(80, budget.clone());
        let mut b = MemoryLimiter::with_budget(80, budget.clone());
        assert!(a.memory_growing(0, 60, None).unwrap());
        // Within b's own limit, beyond what is left of the budget.
        assert!(!b.memory_growing(0, 60, None).unwrap());
        assert!(b.spent_budget().is_some());
        assert!(b.memory_growing(0, 40, None).unwrap());
        assert_eq!(budget.used(), 100);
        // Beyond a's own limit: its own refusal, not the budget's.
        assert!(!a.memory_growing(60, 90, None).unwrap());
        assert!(a.spent_budget().is_none());
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
