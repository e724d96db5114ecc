//! The instance pool of a gateway: one slot per session, and what a slot
//! gives back when its session ends.

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Bytes of a freed slot's linear memory, table and async stack kept
/// resident for the next instance: none. Kept pages are reset with a
/// memset rather than given back, which saves the next session a few page
/// faults but keeps them on every slot a peak ever used: 108 KiB a slot
/// after 4,000 ws-proxy sessions had ended (481 MB resident, 208 MB with
/// none kept), for no difference in instantiation time or sessions per
/// second that the serve bench could tell from its noise (BENCHMARKS.md).
const KEEP_RESIDENT: usize = 0;
/// Freed slots whose pages are given back to the system in one go.
const DECOMMIT_BATCH: usize = 32;
/// The size of a session's async stack: wasm frames (up to wasmtime's
/// default `max_wasm_stack`, 512 KiB) and the host functions under them.
const ASYNC_STACK_SIZE: usize = 1 << 20;

/// How big the pooling allocator's pool is made, for a gateway.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pool {
    /// Instances alive at once: one per session.
    pub(crate) instances: u32,
    /// The largest linear memory of any one instance, in bytes.
    pub(crate) max_memory: usize,
}

/// What a gateway's instance pool holds at a moment: its room, the
/// instances alive, and what freed slots keep resident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Component instances the pool has room for at once: one per session.
    pub slots: u32,
    /// Component instances alive.
    pub instances: u64,
    /// Bytes of freed linear memories still resident. The gateway keeps
    /// none for the next instance: this is what waits to be given back.
    pub idle_memory_resident: usize,
    /// Bytes of freed async stacks still resident, as for memories.
    pub idle_stack_resident: usize,
}

impl Pool {
    /// Makes `config` allocate instances from a pool of this size, with
    /// copy-on-write memory images, and without the component model's
    /// concurrency (which no plugin of a gateway uses).
    pub(crate) fn configure(self, config: &mut Config) {
        let mut pooling = PoolingAllocationConfig::new();
        // A Rust component has a handful of core instances, memories and
        // tables; these bound the pool, the memory limit what is used. One
        // component instance, and one stack, per session: the session limit
        // is checked before an instance is made and its place given back
        // after the instance is gone, so the pool needs no room beyond it.
        pooling
            .total_component_instances(self.instances)
            .total_core_instances(self.instances.saturating_mul(8))
            .total_memories(self.instances.saturating_mul(2))
            .total_tables(self.instances.saturating_mul(4))
            .total_stacks(self.instances)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_memory_size(self.max_memory)
            // A freed slot gives all its pages back.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .async_stack_keep_resident(KEEP_RESIDENT)
            // Give pages back in batches: one `madvise` a slot is cheap,
            // the TLB shootdown that follows each is not.
            .decommit_batch_size(DECOMMIT_BATCH);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        config.memory_init_cow(true);
        // With concurrency support (wasmtime's default) every core instance
        // of a component is instantiated inside a guest task of its own,
        // made and torn down around it: a sixth to a fifth of an
        // instantiation (p50 14.5 -> 11.9 µs back to back, 30 -> 25 µs
        // with a 1 ms sleep between instances, as between sessions;
        // host/examples/instantiate.rs). Plugins are wasip2 components, on
        // the synchronous canonical ABI; one built for the component
        // model's async ABI is refused at load.
        config.concurrency_support(false);
        // A session's stack is given back when it ends, as its memory is
        // (without zeroing, whatever a session touched stays resident).
        config.async_stack_zeroing(true);
        config.async_stack_size(ASYNC_STACK_SIZE);
    }
}

/// What `engine`'s pool holds now; `None` for an engine without one.
pub(crate) fn usage(engine: &Engine) -> Option<PoolUsage> {
    let metrics = engine.pooling_allocator_metrics()?;
    let slots = engine.get_pooling_config()?.get_total_component_instances();
    Some(PoolUsage {
        slots,
        instances: metrics.component_instances(),
        idle_memory_resident: metrics.unused_memory_bytes_resident(),
        idle_stack_resident: metrics.unused_stack_bytes_resident().unwrap_or(0),
    })
}
