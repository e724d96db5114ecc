//! Host work that runs beside a plugin rather than on its stack.
//!
//! A plugin's host calls run on the plugin's own (fiber) stack, and so does
//! the state of every future they await. A connect awaits the resolver, the
//! race's attempts and their TLS handshakes: tens of KiB of state, whose
//! pages stay resident on that stack for as long as the session lives,
//! connected and idle. Run as a task of its own, made inside the task
//! (moving a made future into a task copies it through the stack it was
//! made on), that state is on the heap and freed when the connect is done;
//! the plugin's stack holds only the handle it waits on.

use std::future::Future;
use tokio::task::JoinHandle;

/// Runs the future `work` makes as a task of its own, and waits for its
/// output. Dropped before the end (the plugin was stopped), the task is
/// aborted with it.
pub(super) async fn beside<W, F>(work: W) -> wasmtime::Result<F::Output>
where
    W: FnOnce() -> F + Send + 'static,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // Only `work`'s captures cross into the task; the future it makes is
    // made on the task's thread and boxed there.
    let mut task = AbortOnDrop(tokio::spawn(async move { Box::pin(work()).await }));
    match (&mut task.0).await {
        Ok(output) => Ok(output),
        // The work's own bug: it surfaces here as it would have inline.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime shutting down cancels it from outside.
        Err(e) => Err(wasmtime::Error::msg(format!("the connect was cancelled: {e}"))),
    }
}

struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn the_output_comes_back() {
        assert_eq!(beside(|| async { 7 }).await.unwrap(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_wait_aborts_the_work() {
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let guard = SetOnDrop(dropped.clone());
        let work = move || async move {
            let _guard = guard;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        };
        let waited = tokio::time::timeout(Duration::from_millis(10), beside(work)).await;
        assert!(waited.is_err(), "the work is still running when the wait is given up");
        // The abort takes effect when the runtime next polls the task.
        tokio::task::yield_now().await;
        assert!(
            dropped.load(Ordering::SeqCst),
            "the work was aborted, its state dropped"
        );
    }
}
