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

use std::collections::HashMap;

use chrono::Utc;
use serde_json::Value;
use sqlx::types::Json;
use switchyard_core::{ConfigId, ErrorCode};
use tokio::sync::{mpsc, oneshot};

use super::{
    NewTask, NewTaskResult, Store, StoreError, StoredJson, TaskInsert, UsageRecord, on_pool,
    tasks::{TASK_COLUMNS, Task, TaskRow},
};

/// Most writes in one transaction.
pub const MAX_BATCH: usize = 256;
/// Most rows in one statement. Measured (docs/benchmarks.md): SQLite is fastest with
/// large statements (with `?` placeholders); on PostgreSQL throughput falls off a cliff
/// between 24 and 32 rows per statement through the driver (24: 3.9–4.3k commands/s,
/// 32: 0.65k/s), so it stays at 20.
const fn rows_per_statement(postgres: bool) -> usize {
    if postgres { 20 } else { 64 }
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
}

/// An attempt start to record.
#[derive(Debug, Clone, Copy)]
pub(super) struct Start {
    id: i64,
    config_id: ConfigId,
    attempt: i64,
    seq: i64,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Op {
    Create(Box<NewTask>, Reply<TaskInsert>),
    /// No one waits for an attempt start: it only moves the row to `processing` and
    /// keeps `last_seq` for a resume. The writer takes ops in order, so it is written
    /// no later than the task's terminal row — and not at all when both land in one
    /// batch, where the terminal row supersedes it.
    Start(Start),
    Complete(Box<Completion>, Reply<bool>),
    Fail(Box<Failure>, Reply<bool>),
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
        })
    }
}

fn closed() -> StoreError {
    StoreError::Conflict("the task writer stopped".to_owned())
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

    async fn ask<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.ops.send(op(tx)).map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// [`Store::create_task`], batched.
    ///
    /// # Errors
    /// As [`Store::create_task`].
    pub async fn create_task(&self, task: NewTask) -> Result<TaskInsert, StoreError> {
        self.ask(|reply| Op::Create(Box::new(task), reply)).await
    }

    /// [`Store::start_attempt`], batched and not waited for (see [`Op::Start`]).
    ///
    /// # Errors
    /// When the writer has stopped.
    pub fn record_start(
        &self,
        id: i64,
        config_id: ConfigId,
        attempt: i64,
        seq: i64,
    ) -> Result<(), StoreError> {
        let start = Start {
            id,
            config_id,
            attempt,
            seq,
        };
        self.ops.send(Op::Start(start)).map_err(|_| closed())
    }

    /// [`Store::complete_task_with_usage`], batched.
    ///
    /// # Errors
    /// As [`Store::complete_task_with_usage`].
    pub async fn complete_task(&self, completion: Completion) -> Result<bool, StoreError> {
        self.ask(|reply| Op::Complete(Box::new(completion), reply))
            .await
    }

    /// [`Store::fail_task`], batched.
    ///
    /// # Errors
    /// As [`Store::fail_task`].
    pub async fn fail_task(&self, failure: Failure) -> Result<bool, StoreError> {
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
    for op in batch {
        match op {
            Op::Create(task, reply) => creates.push((task, reply)),
            Op::Start(start) => starts.push(start),
            Op::Complete(completion, reply) => completes.push((completion, reply)),
            Op::Fail(failure, reply) => fails.push((failure, reply)),
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
        }
        Err(e) => {
            tracing::warn!(error = %e, "a batched write failed; writing one at a time");
            for (task, reply) in creates {
                let _ = reply.send(store.create_task(&task).await);
            }
            for s in starts {
                if let Err(e) = store
                    .start_attempt(s.id, s.config_id, s.attempt, s.seq)
                    .await
                {
                    tracing::warn!(error = %e, task_id = s.id, "cannot record the attempt start");
                }
            }
            for (c, reply) in completes {
                let _ = reply.send(
                    store
                        .complete_task_with_usage(
                            c.id,
                            c.config_id,
                            c.attempts,
                            c.raw_response.as_ref(),
                            &c.results,
                            &c.terminal_event,
                            c.usage.as_ref(),
                        )
                        .await,
                );
            }
            for (f, reply) in fails {
                let _ = reply.send(
                    store
                        .fail_task(
                            f.id,
                            f.config_id,
                            f.attempts,
                            f.code,
                            &f.message,
                            &f.terminal_event,
                        )
                        .await,
                );
            }
        }
    }
}

/// What one batch did, in the order of its inputs.
pub(super) struct Outcome {
    pub(super) created: Vec<TaskInsert>,
    completed: Vec<bool>,
    failed: Vec<bool>,
}

/// `($1, $2, …), ($n, …)` for `rows` rows of `columns` placeholders each, with
/// `fixed` SQL spliced in after the placeholders of each row. SQLite gets anonymous
/// `?` placeholders: numbered ones make its driver look every parameter's name up,
/// which was 12 % of all CPU at full load.
fn values(rows: usize, columns: usize, fixed: &str, numbered: bool) -> String {
    let mut sql = String::new();
    let mut n = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            n += 1;
            if numbered {
                sql.push_str(&format!("${n}"));
            } else {
                sql.push('?');
            }
        }
        sql.push_str(fixed);
        sql.push(')');
    }
    sql
}

impl Store {
    /// Writes a batch in one transaction (see the module docs).
    pub(super) async fn write_batch(
        &self,
        creates: &[&NewTask],
        starts: &[Start],
        completes: &[&Completion],
        fails: &[&Failure],
    ) -> Result<Outcome, StoreError> {
        let now = Utc::now();
        // Two terminal writes of one task in a batch (a redelivery racing the first
        // run): only the first takes part; the others lose, as they would one by one.
        let mut seen = std::collections::HashSet::new();
        let first_complete: Vec<bool> = completes.iter().map(|c| seen.insert(c.id)).collect();
        let first_fail: Vec<bool> = fails.iter().map(|f| seen.insert(f.id)).collect();
        let completes_in: Vec<&Completion> = completes
            .iter()
            .zip(&first_complete)
            .filter(|(_, first)| **first)
            .map(|(c, _)| *c)
            .collect();
        let fails_in: Vec<&Failure> = fails
            .iter()
            .zip(&first_fail)
            .filter(|(_, first)| **first)
            .map(|(f, _)| *f)
            .collect();
        // The starts written: not one whose task ends in this batch (the terminal row
        // supersedes it), and of two starts of one task (a fallback to the next
        // attempt) only the later — an `UPDATE … FROM` matching a row twice applies
        // either.
        let mut last_start = HashMap::new();
        for (index, start) in starts.iter().enumerate() {
            last_start.insert(start.id, index);
        }
        let starts: Vec<Start> = starts
            .iter()
            .enumerate()
            .filter(|(index, s)| last_start.get(&s.id) == Some(index) && !seen.contains(&s.id))
            .map(|(_, s)| *s)
            .collect();
        let postgres = matches!(self.pool, super::Pool::Postgres(_));
        let per = rows_per_statement(postgres);
        let done: Result<Result<Outcome, StoreError>, sqlx::Error> = on_pool!(self, |pool| {
            async {
            let mut tx = pool.begin().await?;

            // New tasks: one INSERT … ON CONFLICT DO NOTHING RETURNING per chunk.
            let mut rows: HashMap<(String, String), TaskRow> = HashMap::new();
            for chunk in creates.chunks(per) {
                let sql = format!(
                    "INSERT INTO tasks (request_id, tenant, user_id, kind, prompt, input_images, \
                     model, size, command, created_at, last_seq, cache_key, status) VALUES {} \
                     ON CONFLICT (tenant, request_id) DO NOTHING RETURNING {TASK_COLUMNS}",
                    values(chunk.len(), 12, ", 'pending'", postgres)
                );
                let mut query = sqlx::query_as::<_, TaskRow>(sqlx::AssertSqlSafe(sql));
                for task in chunk {
                    query = query
                        .bind(&task.request_id)
                        .bind(&task.tenant)
                        .bind(&task.user)
                        .bind(&task.kind)
                        .bind(&task.prompt)
                        .bind(task.input_images.as_ref().map(Json))
                        .bind(&task.model)
                        .bind(&task.size)
                        .bind(Json(&task.command))
                        .bind(now)
                        .bind(task.last_seq)
                        .bind(&task.cache_key);
                }
                for row in query.fetch_all(&mut *tx).await? {
                    rows.insert((row.tenant.clone(), row.request_id.clone()), row);
                }
            }
            let mut created = Vec::with_capacity(creates.len());
            for task in creates {
                let key = (task.tenant.clone(), task.request_id.clone());
                // The first of a key in the batch created it; any other one, or a key
                // that was there before, reads the stored row.
                let result = match rows.remove(&key) {
                    Some(row) => Task::try_from(row).map(TaskInsert::Created),
                    None => {
                        let sql = format!(
                            "SELECT {TASK_COLUMNS} FROM tasks WHERE tenant = $1 AND request_id = $2"
                        );
                        let row: Option<TaskRow> =
                            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                                .bind(&task.tenant)
                                .bind(&task.request_id)
                                .fetch_optional(&mut *tx)
                                .await?;
                        match row {
                            Some(row) => Task::try_from(row).map(TaskInsert::Existing),
                            None => Err(StoreError::Corrupt {
                                table: "tasks",
                                detail: "a conflicting task row vanished".to_owned(),
                            }),
                        }
                    }
                };
                match result {
                    Ok(insert) => created.push(insert),
                    Err(e) => return Ok(Err(e)),
                }
            }

            // The parameters of the tasks just created.
            let parameters: Vec<(i64, &str, &str)> = creates
                .iter()
                .zip(&created)
                .filter_map(|(task, insert)| match insert {
                    TaskInsert::Created(t) => Some((t.id, task)),
                    TaskInsert::Existing(_) => None,
                })
                .flat_map(|(id, task)| {
                    task.parameters
                        .iter()
                        .map(move |(name, value)| (id, name.as_str(), value.as_str()))
                })
                .collect();
            for chunk in parameters.chunks(per) {
                let sql = format!(
                    "INSERT INTO task_parameters (task_id, name, value) VALUES {} \
                     ON CONFLICT (task_id, name) DO NOTHING",
                    values(chunk.len(), 3, "", postgres)
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (id, name, value) in chunk {
                    query = query.bind(*id).bind(*name).bind(*value);
                }
                query.execute(&mut *tx).await?;
            }

            // Attempt starts.
            for chunk in starts.chunks(per) {
                let sql = format!(
                    "WITH v (vid, vconfig, vattempt, vstarted, vseq) AS (VALUES {}) \
                     UPDATE tasks SET status = 'processing', provider_config_id = v.vconfig, \
                     attempts = v.vattempt, started_at = COALESCE(started_at, v.vstarted), \
                     last_seq = v.vseq FROM v \
                     WHERE id = v.vid AND status IN ('pending', 'processing')",
                    values(chunk.len(), 5, "", postgres)
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for s in chunk {
                    query = query
                        .bind(s.id)
                        .bind(s.config_id.0)
                        .bind(s.attempt)
                        .bind(now)
                        .bind(s.seq);
                }
                query.execute(&mut *tx).await?;
            }

            // Completions, then the results and usage of those that won.
            let mut completed_ids = Vec::new();
            for chunk in completes_in.chunks(per) {
                let sql = format!(
                    "WITH v (vid, vconfig, vattempts, vraw, vterminal, vnow) AS (VALUES {}) \
                     UPDATE tasks SET status = 'completed', provider_config_id = v.vconfig, \
                     attempts = v.vattempts, raw_response = v.vraw, terminal_event = v.vterminal, \
                     completed_at = v.vnow, started_at = COALESCE(started_at, v.vnow) FROM v \
                     WHERE id = v.vid AND status IN ('pending', 'processing') RETURNING id",
                    values(chunk.len(), 6, "", postgres)
                );
                let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
                for c in chunk {
                    query = query
                        .bind(c.id)
                        .bind(c.config_id.map(|id| id.0))
                        .bind(c.attempts)
                        .bind(c.raw_response.as_ref().map(Json))
                        .bind(Json(&c.terminal_event))
                        .bind(now);
                }
                completed_ids.extend(query.fetch_all(&mut *tx).await?);
            }
            let won: Vec<&&Completion> = completes_in
                .iter()
                .filter(|c| completed_ids.contains(&c.id))
                .collect();
            let results: Vec<(i64, &NewTaskResult)> = won
                .iter()
                .flat_map(|c| c.results.iter().map(move |r| (c.id, r)))
                .collect();
            for chunk in results.chunks(per) {
                let sql = format!(
                    "INSERT INTO task_results (task_id, artifact_id, url, content_type, bytes, \
                     width, height, sha256, model, seed, revised_prompt, text, created_at) \
                     VALUES {}",
                    values(chunk.len(), 13, "", postgres)
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (id, r) in chunk {
                    query = super::tasks::bind_result(query, *id, r, now);
                }
                query.execute(&mut *tx).await?;
            }
            let usages: Vec<&UsageRecord> = won.iter().filter_map(|c| c.usage.as_ref()).collect();
            for chunk in usages.chunks(per) {
                let sql = format!(
                    "INSERT INTO usage_log (task_id, tenant, user_id, provider_config_id, provider, \
                     model, kind, images, input_tokens, output_tokens, cost_usd, created_at) \
                     VALUES {}",
                    values(chunk.len(), 12, "", postgres)
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for u in chunk {
                    query = super::usage::bind_usage(query, u, now);
                }
                query.execute(&mut *tx).await?;
            }

            // Failures.
            let mut failed_ids = Vec::new();
            for chunk in fails_in.chunks(per) {
                let sql = format!(
                    "WITH v (vid, vconfig, vattempts, vcode, vmessage, vterminal, vnow) AS \
                     (VALUES {}) UPDATE tasks SET status = 'failed', \
                     provider_config_id = COALESCE(v.vconfig, provider_config_id), \
                     attempts = v.vattempts, error_code = v.vcode, error_message = v.vmessage, \
                     terminal_event = v.vterminal, completed_at = v.vnow FROM v \
                     WHERE id = v.vid AND status IN ('pending', 'processing') RETURNING id",
                    values(chunk.len(), 7, "", postgres)
                );
                let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
                for f in chunk {
                    query = query
                        .bind(f.id)
                        .bind(f.config_id.map(|c| c.0))
                        .bind(f.attempts)
                        .bind(f.code.as_str())
                        .bind(&f.message)
                        .bind(Json(&f.terminal_event))
                        .bind(now);
                }
                failed_ids.extend(query.fetch_all(&mut *tx).await?);
            }
            tx.commit().await?;
            Ok(Ok(Outcome {
                created,
                completed: completes
                    .iter()
                    .zip(&first_complete)
                    .map(|(c, first)| *first && completed_ids.contains(&c.id))
                    .collect(),
                failed: fails
                    .iter()
                    .zip(&first_fail)
                    .map(|(f, first)| *first && failed_ids.contains(&f.id))
                    .collect(),
            }))
        }
        .await
        });
        done?
    }
}

#[cfg(test)]
mod tests {
    use super::values;

    #[test]
    fn values_lists_number_their_placeholders() {
        assert_eq!(values(2, 2, "", true), "($1, $2), ($3, $4)");
        assert_eq!(values(1, 2, ", 'x'", true), "($1, $2, 'x')");
        assert_eq!(values(2, 1, "", false), "(?), (?)");
    }
}
