//! Group commit for the command path. Every command writes its task row, the start
//! of each attempt and its terminal row; one statement each costs a driver round trip
//! (~100 µs on two cores), which capped end-to-end throughput near 1,500 commands/s
//! whatever the bus. [`GroupCommit`] hands these writes to one writer task that takes
//! whatever is queued (up to [`MAX_BATCH`]) and writes it in one transaction with
//! multi-row statements: one `INSERT … RETURNING` for new tasks, one `UPDATE … FROM`
//! a `VALUES` list for attempt starts, one for completions (then one insert for their
//! results and one for their usage), one for failures.
//!
//! Semantics do not change: every caller gets its own answer (created or existing,
//! whether its terminal transition won) only after the transaction committed, so the
//! ingress order "row durable → terminal event → ack" holds. At low load a batch is a
//! single write: nothing waits for a batch to fill. A batch that fails is retried one
//! write at a time, so one bad write cannot fail the others.

use serde_json::Value;
use switchyard_core::{ConfigId, ErrorCode};
use tokio::sync::{mpsc, oneshot};

use super::{NewTask, NewTaskResult, QueryError, Store, StoredJson, TaskInsert, UsageRecord};

/// Most writes in one transaction.
pub const MAX_BATCH: usize = 256;
/// Most rows in one statement. Measured (docs/benchmarks.md): SQLite is fastest with
/// large statements (with `?` placeholders); on PostgreSQL throughput falls off a cliff
/// between 24 and 32 rows per statement through the driver (24: 3.9–4.3k commands/s,
/// 32: 0.65k/s), so it stays at 20.
const fn rows_per_statement(postgres: bool) -> usize {
    if postgres { 20 } else { 64 }
}

/// `rows` in the chunks one multi-row statement each writes, at most
/// [`rows_per_statement`] each. On SQLite a chunk is the largest power of two that is
/// left (37 rows: 32, 4, 1): each row count is a statement text of its own that every
/// pooled connection prepares and keeps in this process, and with any count from 1 to
/// 64 those caches held several hundred large statements each, half the RSS under load
/// (#15's soak); with powers of two there are seven a table. PostgreSQL keeps its
/// statements in the server and is fastest at 20 rows (16 measured 20 % slower), so
/// there every chunk but the last is 20 rows, as before.
fn statement_chunks<T>(rows: &[T], postgres: bool) -> impl Iterator<Item = &[T]> {
    let per = rows_per_statement(postgres);
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let most = rest.len().min(per);
        let count = if postgres {
            most
        } else {
            1 << (usize::BITS - 1 - most.leading_zeros())
        };
        let (chunk, tail) = rest.split_at(count);
        rest = tail;
        Some(chunk)
    })
}

/// A terminal success to write.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Task id.
    pub id: i64,
    /// The instance that served it.
    pub config_id: Option<ConfigId>,
    /// Attempts made.
    pub attempts: i64,
    /// The provider's raw answer, secrets removed.
    pub raw_response: Option<Value>,
    /// Result rows.
    pub results: Vec<NewTaskResult>,
    /// The terminal event, encoded once for the row and the wire.
    pub terminal_event: StoredJson,
    /// The usage row.
    pub usage: Option<UsageRecord>,
    /// Whether the request may hold quota reservations (its tenant has quotas): the
    /// write settles them.
    pub held: bool,
    /// Its attempts, for the statistics (written if this transition wins).
    pub attempt_log: Vec<crate::AttemptRow>,
}

/// A terminal failure to write.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Task id.
    pub id: i64,
    /// The instance that failed last, if any.
    pub config_id: Option<ConfigId>,
    /// Attempts made.
    pub attempts: i64,
    /// The error code.
    pub code: ErrorCode,
    /// The error message.
    pub message: String,
    /// The terminal event, encoded once for the row and the wire.
    pub terminal_event: StoredJson,
    /// What a provider was paid for although the request failed (an answer the
    /// database could not keep), if anything.
    pub usage: Option<UsageRecord>,
    /// Whether the request may hold quota reservations (its tenant has quotas): the
    /// write releases them (settles them with `usage`, if any).
    pub held: bool,
    /// Its attempts, for the statistics (written if this transition wins).
    pub attempt_log: Vec<crate::AttemptRow>,
}

/// A claim on a task: `owner` runs it until `until_ms` (Unix ms), unless another
/// owner's claim is still live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Task id.
    pub id: i64,
    /// Who claims it (one id per process).
    pub owner: String,
    /// When the claim lapses unless renewed (Unix ms).
    pub until_ms: i64,
    /// Now (Unix ms): a claim whose lease ended before this is taken over.
    pub now_ms: i64,
}

/// An attempt start to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// Task id.
    pub id: i64,
    /// The instance the attempt runs on.
    pub config_id: ConfigId,
    /// 1-based attempt number.
    pub attempt: i64,
    /// `seq` of the attempt's `started` event (kept as `last_seq` for a resume).
    pub seq: i64,
    /// Admission restricted the request to its tenant's own accounts (kept for a
    /// resume).
    pub own_accounts_only: bool,
}

type Reply<T> = oneshot::Sender<Result<T, QueryError>>;

/// Why a write through the [`GroupCommit`] failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupCommitError {
    /// The writer task has stopped (its store was closed or it panicked): nothing was
    /// written.
    #[error("the task writer stopped")]
    Stopped,
    /// The write itself failed.
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl GroupCommitError {
    /// [`QueryError::refusal`]: whether the write's values were refused for good.
    pub fn refusal(&self) -> Option<crate::Refusal> {
        match self {
            GroupCommitError::Query(error) => error.refusal(),
            GroupCommitError::Stopped => None,
        }
    }
}

enum Op {
    Create(Box<NewTask>, Reply<TaskInsert>),
    /// No one waits for an attempt start: it only moves the row to `processing` and
    /// keeps `last_seq` for a resume. The writer takes ops in order, so it is written
    /// no later than the task's terminal row — and not at all when both land in one
    /// batch, where the terminal row supersedes it.
    Start(Start),
    Complete(Box<Completion>, Reply<bool>),
    Fail(Box<Failure>, Reply<bool>),
    Claim(Box<Claim>, Reply<bool>),
}

/// The handle of one writer task. Cheap to clone; the writer ends with the last clone.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    ops: mpsc::UnboundedSender<Op>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Create(..) => "Create",
            Op::Start(_) => "Start",
            Op::Complete(..) => "Complete",
            Op::Fail(..) => "Fail",
            Op::Claim(..) => "Claim",
        })
    }
}

impl GroupCommit {
    /// Starts the writer on a thread of its own, driven through the current tokio
    /// runtime's handle (so database I/O stays on that runtime's drivers).
    ///
    /// Why a thread: a batch is a dozen statement round trips to the driver, and as a
    /// task among thousands of request tasks the writer waited in the scheduler's queue
    /// after each one — measured at full load, batches took ~15 ms of which SQLite
    /// needed a third, and the writer (busy all the time) capped throughput. On its own
    /// thread each answer wakes it at once. If no thread can be had it runs as a task.
    pub fn start(store: Store) -> Self {
        let (ops, rx) = mpsc::unbounded_channel();
        let handle = tokio::runtime::Handle::current();
        let work = std::sync::Arc::new(std::sync::Mutex::new(Some((store, rx))));
        let on_thread = work.clone();
        let spawned = std::thread::Builder::new()
            .name("switchyard-task-writer".to_owned())
            .spawn(move || {
                let taken = on_thread.lock().ok().and_then(|mut w| w.take());
                if let Some((store, rx)) = taken {
                    handle.block_on(writer(store, rx));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no thread for the task writer; it runs as a task");
            if let Some((store, rx)) = work.lock().ok().and_then(|mut w| w.take()) {
                switchyard_tasks::Tasks::new("store").spawn("task-writer", writer(store, rx));
            }
        }
        Self { ops }
    }

    async fn ask<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, GroupCommitError> {
        let (tx, rx) = oneshot::channel();
        self.ops
            .send(op(tx))
            .map_err(|_| GroupCommitError::Stopped)?;
        Ok(rx.await.map_err(|_| GroupCommitError::Stopped)??)
    }

    /// [`Store::create_task`], batched.
    ///
    /// # Errors
    /// As [`Store::create_task`], or [`GroupCommitError::Stopped`].
    pub async fn create_task(&self, task: NewTask) -> Result<TaskInsert, GroupCommitError> {
        self.ask(|reply| Op::Create(Box::new(task), reply)).await
    }

    /// [`Store::start_attempt`], batched and not waited for (see [`Op::Start`]).
    ///
    /// # Errors
    /// [`GroupCommitError::Stopped`] when the writer has stopped.
    pub fn record_start(&self, start: Start) -> Result<(), GroupCommitError> {
        self.ops
            .send(Op::Start(start))
            .map_err(|_| GroupCommitError::Stopped)
    }

    /// [`Store::complete_task`], batched.
    ///
    /// # Errors
    /// As [`Store::complete_task`], or [`GroupCommitError::Stopped`].
    pub async fn complete_task(&self, completion: Completion) -> Result<bool, GroupCommitError> {
        self.ask(|reply| Op::Complete(Box::new(completion), reply))
            .await
    }

    /// [`Store::claim_task`], batched: whether this owner now holds the task.
    ///
    /// # Errors
    /// As [`Store::claim_task`], or [`GroupCommitError::Stopped`].
    pub async fn claim_task(&self, claim: Claim) -> Result<bool, GroupCommitError> {
        self.ask(|reply| Op::Claim(Box::new(claim), reply)).await
    }

    /// [`Store::fail_task`], batched.
    ///
    /// # Errors
    /// As [`Store::fail_task`], or [`GroupCommitError::Stopped`].
    pub async fn fail_task(&self, failure: Failure) -> Result<bool, GroupCommitError> {
        self.ask(|reply| Op::Fail(Box::new(failure), reply)).await
    }
}

async fn writer(store: Store, mut rx: mpsc::UnboundedReceiver<Op>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let size = batch.len();
        let started = std::time::Instant::now();
        run(&store, batch).await;
        metrics::histogram!("switchyard_store_batch_size").record(size as f64);
        metrics::histogram!("switchyard_store_batch_seconds")
            .record(started.elapsed().as_secs_f64());
        tracing::debug!(
            size,
            elapsed_us = started.elapsed().as_micros() as u64,
            "batch written"
        );
    }
}

async fn run(store: &Store, batch: Vec<Op>) {
    let mut creates = Vec::new();
    let mut starts = Vec::new();
    let mut completes = Vec::new();
    let mut fails = Vec::new();
    let mut claims = Vec::new();
    for op in batch {
        match op {
            Op::Create(task, reply) => creates.push((task, reply)),
            Op::Start(start) => starts.push(start),
            Op::Complete(completion, reply) => completes.push((completion, reply)),
            Op::Fail(failure, reply) => fails.push((failure, reply)),
            Op::Claim(claim, reply) => claims.push((claim, reply)),
        }
    }
    let written = store
        .write_batch(
            &creates.iter().map(|(t, _)| t.as_ref()).collect::<Vec<_>>(),
            &starts,
            &completes
                .iter()
                .map(|(c, _)| c.as_ref())
                .collect::<Vec<_>>(),
            &fails.iter().map(|(f, _)| f.as_ref()).collect::<Vec<_>>(),
            &claims.iter().map(|(c, _)| c.as_ref()).collect::<Vec<_>>(),
        )
        .await;
    match written {
        Ok(outcome) => {
            for ((_, reply), result) in creates.into_iter().zip(outcome.created) {
                let _ = reply.send(Ok(result));
            }
            for ((_, reply), won) in completes.into_iter().zip(outcome.completed) {
                let _ = reply.send(Ok(won));
            }
            for ((_, reply), won) in fails.into_iter().zip(outcome.failed) {
                let _ = reply.send(Ok(won));
            }
            for ((_, reply), held) in claims.into_iter().zip(outcome.claimed) {
                let _ = reply.send(Ok(held));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "a batched write failed; writing one at a time");
            for (task, reply) in creates {
                let _ = reply.send(store.create_task(&task).await);
            }
            for s in starts {
                if let Err(e) = store.start_attempt(s).await {
                    tracing::warn!(error = %e, task_id = s.id, "cannot record the attempt start");
                }
            }
            for (c, reply) in completes {
                let _ = reply.send(store.complete_task(&c).await);
            }
            for (f, reply) in fails {
                let _ = reply.send(store.fail_task(&f).await);
            }
            for (c, reply) in claims {
                let _ = reply.send(store.claim_task(&c).await);
            }
        }
    }
}

/// What one batch did, in the order of its inputs.
pub(super) struct Outcome {
    pub(super) created: Vec<TaskInsert>,
    pub(super) started: Vec<bool>,
    pub(super) completed: Vec<bool>,
    pub(super) failed: Vec<bool>,
    pub(super) claimed: Vec<bool>,
}

pub(crate) mod statements;

#[cfg(test)]
mod tests {
    use super::statement_chunks;

    fn sizes(rows: usize, postgres: bool) -> Vec<usize> {
        let rows: Vec<usize> = (0..rows).collect();
        let chunks: Vec<&[usize]> = statement_chunks(&rows, postgres).collect();
        // In order, every row once.
        assert_eq!(chunks.concat(), rows);
        chunks.iter().map(|c| c.len()).collect()
    }

    #[test]
    fn a_sqlite_batch_is_written_in_power_of_two_statements_of_at_most_64_rows() {
        assert_eq!(sizes(0, false), Vec::<usize>::new());
        assert_eq!(sizes(1, false), [1]);
        assert_eq!(sizes(37, false), [32, 4, 1]);
        assert_eq!(sizes(64, false), [64]);
        assert_eq!(sizes(130, false), [64, 64, 2]);
        // Over any batch size, seven row counts at most.
        let mut counts: Vec<usize> = (1..=300).flat_map(|n| sizes(n, false)).collect();
        counts.sort_unstable();
        counts.dedup();
        assert_eq!(counts, [1, 2, 4, 8, 16, 32, 64]);
    }

    #[test]
    fn a_postgres_batch_is_written_in_statements_of_20_rows() {
        assert_eq!(sizes(0, true), Vec::<usize>::new());
        assert_eq!(sizes(45, true), [20, 20, 5]);
        assert_eq!(sizes(20, true), [20]);
    }
}
