//! The SQL of one batch: multi-row statements for each kind of write, in one
//! transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use switchyard_core::{RequestId, Tenant};

use super::{Claim, Completion, Failure, Outcome, Start, statement_chunks};
use crate::{
    NewTask, NewTaskResult, QueryError, Store, TaskInsert, UsageRecord, on_pool,
    tasks::{TASK_COLUMNS, Task},
};

/// `($1, $2, …), ($n, …)` for `rows` rows of `columns` placeholders each, with
/// `fixed` SQL spliced in after the placeholders of each row. SQLite gets anonymous
/// `?` placeholders: numbered ones make its driver look every parameter's name up,
/// which was 12 % of all CPU at full load.
pub(crate) fn values(rows: usize, columns: usize, fixed: &str, numbered: bool) -> String {
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

/// Binds the 13 columns of one `task_results` row (task id first, `created_at` last),
/// for either database.
pub(crate) fn bind_result<'q, DB: sqlx::Database>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    task_id: i64,
    r: &'q NewTaskResult,
    now: DateTime<Utc>,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(task_id)
        .bind(&r.artifact_id)
        .bind(&r.url)
        .bind(&r.content_type)
        .bind(r.bytes)
        .bind(r.width)
        .bind(r.height)
        .bind(&r.sha256)
        .bind(&r.model)
        .bind(r.seed)
        .bind(&r.revised_prompt)
        .bind(&r.text)
        .bind(now)
}

impl Store {
    /// Writes a batch in one transaction (see the module docs).
    pub(crate) async fn write_batch(
        &self,
        creates: &[&NewTask],
        starts: &[Start],
        completes: &[&Completion],
        fails: &[&Failure],
        claims: &[&Claim],
    ) -> Result<Outcome, QueryError> {
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
        let written_starts: Vec<Option<i64>> = starts
            .iter()
            .enumerate()
            .map(|(index, s)| {
                (last_start.get(&s.id) == Some(&index) && !seen.contains(&s.id)).then_some(s.id)
            })
            .collect();
        let starts: Vec<Start> = starts
            .iter()
            .zip(&written_starts)
            .filter(|(_, written)| written.is_some())
            .map(|(s, _)| *s)
            .collect();
        let postgres = matches!(self.pool, crate::Pool::Postgres(_));
        let done: Result<Result<Outcome, QueryError>, sqlx::Error> = on_pool!(self, |pool| {
            async {
            let mut tx = pool.begin().await?;

            // New tasks: one INSERT … ON CONFLICT DO NOTHING RETURNING per chunk.
            let mut rows: HashMap<(Tenant, RequestId), Task> = HashMap::new();
            for chunk in statement_chunks(creates, postgres) {
                let sql = format!(
                    "INSERT INTO tasks (request_id, tenant, user_id, kind, prompt, input_images, \
                     model, size, command, created_at, last_seq, cache_key, claimed_by, claim_until, \
                     batch_id, batch_index, batch_state, status) VALUES {} \
                     ON CONFLICT (tenant, request_id) DO NOTHING RETURNING {TASK_COLUMNS}",
                    values(chunk.len(), 17, ", 'pending'", postgres)
                );
                let mut query = sqlx::query_as::<_, Task>(sqlx::AssertSqlSafe(sql));
                for task in chunk {
                    query = query
                        .bind(task.request_id.as_str())
                        .bind(task.tenant.as_str())
                        .bind(&task.user)
                        .bind(&task.kind)
                        .bind(&task.prompt)
                        .bind(task.input_images.as_ref().map(Json))
                        .bind(&task.model)
                        .bind(&task.size)
                        .bind(Json(&task.command))
                        .bind(now)
                        .bind(task.last_seq)
                        .bind(&task.cache_key)
                        .bind(task.claim.as_ref().map(|(owner, _)| owner))
                        .bind(task.claim.as_ref().map_or(0, |(_, until)| *until))
                        .bind(task.batch.as_ref().map(|(batch, _)| batch))
                        .bind(task.batch.as_ref().map(|(_, index)| *index))
                        .bind(task.batch.as_ref().map(|_| "waiting"));
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
                    Some(row) => Ok(TaskInsert::Created(row)),
                    None => {
                        let sql = format!(
                            "SELECT {TASK_COLUMNS} FROM tasks WHERE tenant = $1 AND request_id = $2"
                        );
                        let row: Option<Task> =
                            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                                .bind(task.tenant.as_str())
                                .bind(task.request_id.as_str())
                                .fetch_optional(&mut *tx)
                                .await?;
                        match row {
                            Some(row) => Ok(TaskInsert::Existing(row)),
                            None => Err(QueryError::Corrupt {
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
            for chunk in statement_chunks(&parameters, postgres) {
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

            // Claims, one statement each (few per batch: one per command run): taken
            // when free, already this owner's, or lapsed.
            let mut claimed = Vec::with_capacity(claims.len());
            for claim in claims {
                let held: Option<i64> = sqlx::query_scalar(
                    "UPDATE tasks SET claimed_by = $2, claim_until = $3 \
                     WHERE id = $1 AND status IN ('pending', 'processing') \
                     AND (claimed_by IS NULL OR claimed_by = $2 OR claim_until < $4) \
                     RETURNING id",
                )
                .bind(claim.id)
                .bind(&claim.owner)
                .bind(claim.until_ms)
                .bind(claim.now_ms)
                .fetch_optional(&mut *tx)
                .await?;
                claimed.push(held.is_some());
            }

            // Attempt starts.
            let mut started_ids = Vec::new();
            for chunk in statement_chunks(&starts, postgres) {
                let sql = format!(
                    "WITH v (vid, vconfig, vattempt, vstarted, vseq, vown) AS (VALUES {}) \
                     UPDATE tasks SET status = 'processing', provider_config_id = v.vconfig, \
                     attempts = v.vattempt, started_at = COALESCE(started_at, v.vstarted), \
                     last_seq = v.vseq, own_accounts_only = v.vown FROM v \
                     WHERE id = v.vid AND status IN ('pending', 'processing') RETURNING id",
                    values(chunk.len(), 6, "", postgres)
                );
                let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
                for s in chunk {
                    query = query
                        .bind(s.id)
                        .bind(s.config_id.0)
                        .bind(s.attempt)
                        .bind(now)
                        .bind(s.seq)
                        .bind(s.own_accounts_only);
                }
                started_ids.extend(query.fetch_all(&mut *tx).await?);
            }

            // Completions, then the results and usage of those that won.
            let mut completed_ids = Vec::new();
            for chunk in statement_chunks(&completes_in, postgres) {
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
            for chunk in statement_chunks(&results, postgres) {
                let sql = format!(
                    "INSERT INTO task_results (task_id, artifact_id, url, content_type, bytes, \
                     width, height, sha256, model, seed, revised_prompt, text, created_at) \
                     VALUES {}",
                    values(chunk.len(), 13, "", postgres)
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (id, r) in chunk {
                    query = bind_result(query, *id, r, now);
                }
                query.execute(&mut *tx).await?;
            }

            // Failures.
            let mut failed_ids = Vec::new();
            for chunk in statement_chunks(&fails_in, postgres) {
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

            // The usage of the completions that won, and of the failures that won
            // with a paid answer.
            let usages: Vec<&UsageRecord> = won
                .iter()
                .filter_map(|c| c.usage.as_ref())
                .chain(
                    fails_in
                        .iter()
                        .filter(|f| failed_ids.contains(&f.id))
                        .filter_map(|f| f.usage.as_ref()),
                )
                .collect();
            for chunk in statement_chunks(&usages, postgres) {
                let sql = format!(
                    "INSERT INTO usage_log (task_id, tenant, user_id, provider_config_id, provider, \
                     model, kind, images, input_tokens, output_tokens, cost_usd, charged, \
                     created_at) VALUES {}",
                    values(chunk.len(), 13, "", postgres)
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for u in chunk {
                    query = crate::usage::bind_usage(query, u, now);
                }
                query.execute(&mut *tx).await?;
            }

            // The attempts of the requests that ended, for the statistics.
            let attempts: Vec<(i64, &crate::AttemptRow)> = won
                .iter()
                .flat_map(|c| c.attempt_log.iter().map(move |a| (c.id, a)))
                .chain(
                    fails_in
                        .iter()
                        .filter(|f| failed_ids.contains(&f.id))
                        .flat_map(|f| f.attempt_log.iter().map(move |a| (f.id, a))),
                )
                .collect();
            for chunk in statement_chunks(&attempts, postgres) {
                let sql = format!(
                    "INSERT INTO attempt_log (task_id, tenant, kind, provider_config_id, \
                     succeeded, error_code, latency_ms, created_at) VALUES {}",
                    values(chunk.len(), 8, "", postgres)
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (id, a) in chunk {
                    query = query
                        .bind(*id)
                        .bind(&a.tenant)
                        .bind(&a.kind)
                        .bind(a.config_id)
                        .bind(a.succeeded)
                        .bind(&a.error_code)
                        .bind(a.latency_ms)
                        .bind(now);
                }
                query.execute(&mut *tx).await?;
            }

            // The quota holds of the requests that ended: settled with what they used.
            let settled: Vec<(i64, Option<&UsageRecord>)> = won
                .iter()
                .filter(|c| c.held)
                .map(|c| (c.id, c.usage.as_ref().filter(|u| u.charged)))
                .chain(
                    fails_in
                        .iter()
                        .filter(|f| f.held && failed_ids.contains(&f.id))
                        .map(|f| (f.id, f.usage.as_ref().filter(|u| u.charged))),
                )
                .collect();
            for chunk in statement_chunks(&settled, postgres) {
                let ids = (1..=chunk.len())
                    .map(|i| if postgres { format!("${i}") } else { "?".to_owned() })
                    .collect::<Vec<_>>()
                    .join(", ");
                let (update, delete) =
                    crate::quota_holds::settle_sql(&values(chunk.len(), 5, "", postgres), &ids);
                let mut query = sqlx::query(sqlx::AssertSqlSafe(update));
                for (id, usage) in chunk {
                    query = query
                        .bind(*id)
                        .bind(i64::from(usage.is_some()))
                        .bind(usage.map_or(0, |u| u.images))
                        .bind(usage.map_or(0, |u| u.input_tokens.saturating_add(u.output_tokens)))
                        .bind(usage.map_or(0.0, |u| u.cost_usd));
                }
                query.execute(&mut *tx).await?;
                let mut query = sqlx::query(sqlx::AssertSqlSafe(delete));
                for (id, _) in chunk {
                    query = query.bind(*id);
                }
                query.execute(&mut *tx).await?;
            }

            tx.commit().await?;
            Ok(Ok(Outcome {
                created,
                claimed,
                started: written_starts
                    .iter()
                    .map(|written| written.is_some_and(|id| started_ids.contains(&id)))
                    .collect(),
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
