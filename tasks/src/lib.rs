//! Background tasks with an owner.
//!
//! Every task the gateway starts in the background is spawned through a [`Tasks`]
//! held by whoever started it (the engine, the reloader, the store's writer, the
//! serving process …). The owner's [`Tasks::shutdown`] cancels what is still running
//! and waits for it, so nothing outlives the component that started it. A task that
//! panics is logged with its name and counted in `switchyard_task_panics_total{task}`
//! instead of vanishing.
//!
//! Clippy's `disallowed-methods` (see `clippy.toml`) forbids a bare `tokio::spawn`
//! anywhere else, so a new background task cannot be started without an owner.

use std::{future::Future, panic::AssertUnwindSafe, time::Duration};

use futures_util::FutureExt as _;
use tokio::task::JoinHandle;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// A set of background tasks and the one who owns them.
///
/// Clones share the set: any clone may spawn, and shutting one down stops them all.
#[derive(Debug, Clone)]
pub struct Tasks {
    owner: &'static str,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Tasks {
    /// An empty set owned by `owner` (a name for logs).
    pub fn new(owner: &'static str) -> Self {
        Self {
            owner,
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
        }
    }

    /// A set of its own that is also cancelled when this one shuts down (a component
    /// started by this owner, which may be stopped on its own before).
    pub fn child(&self, owner: &'static str) -> Self {
        Self {
            owner,
            tracker: TaskTracker::new(),
            cancel: self.cancel.child_token(),
        }
    }

    /// Runs `future` in the background as `name`. It is dropped at its next await
    /// when the owner shuts down; a panic is logged and counted.
    pub fn spawn<F>(&self, name: &'static str, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.spawn_with_result(name, future));
    }

    /// [`Tasks::spawn`] for a task whose result the caller waits for: the handle gives
    /// `None` when the task was cancelled or panicked.
    pub fn spawn_with_result<F, T>(&self, name: &'static str, future: F) -> JoinHandle<Option<T>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let cancel = self.cancel.clone();
        let owner = self.owner;
        self.tracker.spawn(async move {
            tokio::select! {
                biased;
                () = cancel.cancelled() => None,
                result = AssertUnwindSafe(future).catch_unwind() => match result {
                    Ok(value) => Some(value),
                    Err(panic) => {
                        note_panic(owner, name, panic.as_ref());
                        None
                    }
                },
            }
        })
    }

    /// Runs `future`, a task that ends by itself within a bound (a provider call under
    /// its timeout, a request under its deadline), in the background as `name`. It is
    /// tracked and a panic is logged and counted, but shutting down does not cancel it:
    /// it registers with no cancellation token, which on the per-request hot path
    /// costs a lock on the token shared by every task (measured in docs/benchmarks.md).
    pub fn spawn_bounded<F>(&self, name: &'static str, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let owner = self.owner;
        drop(self.tracker.spawn(async move {
            if let Err(panic) = AssertUnwindSafe(future).catch_unwind().await {
                note_panic(owner, name, panic.as_ref());
            }
        }));
    }

    /// A token that is cancelled when this set shuts down, for loops that want to stop
    /// at a point of their own choosing instead of being dropped.
    pub fn cancelled(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// How many tasks are still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no task is running.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Cancels every task without waiting for them (for an owner's `Drop`).
    pub fn cancel(&self) {
        self.cancel.cancel();
        self.tracker.close();
    }

    /// Waits until every task has ended by itself, cancelling none: the drain of an
    /// owner that told its tasks to finish in their own way (the HTTP server lets each
    /// connection finish its request in flight). Bound it with the tasks' own limits,
    /// or with [`Tasks::shutdown`] after it.
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Cancels every task and waits up to `grace` for them to end. Returns whether all
    /// ended in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.cancel.cancel();
        self.tracker.close();
        let ended = tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok();
        if !ended {
            tracing::warn!(
                owner = self.owner,
                left = self.tracker.len(),
                "background tasks did not end in time"
            );
        }
        ended
    }
}

/// Logs and counts a task's panic.
fn note_panic(owner: &'static str, name: &'static str, panic: &(dyn std::any::Any + Send)) {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".to_owned());
    tracing::error!(owner, task = name, panic = %message, "background task panicked");
    metrics::counter!("switchyard_task_panics_total", "task" => name).increment(1);
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use super::*;

    #[tokio::test]
    async fn shutdown_cancels_what_is_still_running() {
        let tasks = Tasks::new("test");
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        tasks.spawn("sleeper", async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            flag.store(true, Ordering::SeqCst);
        });
        assert_eq!(tasks.len(), 1);
        assert!(tasks.shutdown(Duration::from_secs(5)).await);
        assert!(tasks.is_empty());
        assert!(!finished.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_panic_is_caught_and_the_others_go_on() {
        let tasks = Tasks::new("test");
        let panicked = tasks.spawn_with_result("boom", async {
            if tasks_should_panic() {
                panic!("on purpose");
            }
            1
        });
        let fine = tasks.spawn_with_result("fine", async { 2 });
        assert_eq!(panicked.await.ok(), Some(None));
        assert_eq!(fine.await.ok(), Some(Some(2)));
    }

    #[tokio::test]
    async fn a_child_stops_with_its_parent() {
        let parent = Tasks::new("parent");
        let child = parent.child("child");
        let handle = child.spawn_with_result("forever", std::future::pending::<()>());
        assert!(parent.shutdown(Duration::from_secs(5)).await);
        assert_eq!(handle.await.ok(), Some(None));
    }

    #[tokio::test]
    async fn a_bounded_task_is_tracked_and_survives_its_panic_quietly() {
        let tasks = Tasks::new("test");
        tasks.spawn_bounded("boom", async {
            if tasks_should_panic() {
                panic!("on purpose");
            }
        });
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        tasks.spawn_bounded("short", async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            flag.store(true, Ordering::SeqCst);
        });
        assert!(tasks.shutdown(Duration::from_secs(5)).await);
        assert!(
            done.load(Ordering::SeqCst),
            "a bounded task is waited for, not cancelled"
        );
    }

    #[tokio::test]
    async fn wait_lets_every_task_finish_without_cancelling_it() {
        let tasks = Tasks::new("test");
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        tasks.spawn("short", async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            flag.store(true, Ordering::SeqCst);
        });
        tasks.wait().await;
        assert!(done.load(Ordering::SeqCst), "waited for, not cancelled");
        assert!(tasks.is_empty());
    }

    fn tasks_should_panic() -> bool {
        true
    }
}
