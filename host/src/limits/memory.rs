//! The memory limit: every linear memory and table of an instance
//! counted together.

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
}

impl MemoryLimiter {
    /// A limiter granting `limit` bytes of linear memory in all.
    pub(crate) fn new(limit: usize) -> Self {
        MemoryLimiter {
            limit,
            memory: 0,
            table_elements: 0,
            refused: None,
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
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // `memory.grow` returns -1 beyond the limit, as WebAssembly lets a
        // host do; the plugin may cope with it.
        let total = self.memory.saturating_add(desired.saturating_sub(current));
        if total > self.limit {
            self.refused = Some(self.refused.map_or(total, |d| d.max(total)));
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
