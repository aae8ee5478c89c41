//! `standby`: a delivery of a task that another run holds waits for that run instead
//! of coming back (#14).
//!
//! A second delivery of a running task (the same command published twice without a
//! message id, or a redelivery after the first process lost the bus for longer than
//! the ack wait) finds the task's claim live. Nak'ing it would spend one of the
//! command's deliveries every half lease: a duplicate of a long task would run out of
//! them and give up (publishing a `failed` while the other run goes on) at its first
//! database error, or be dropped by the bus at its `max_deliver`, leaving no one to
//! resume the task if the holder then dies.
//!
//! So the delivery stands by, in progress (the pipeline keeps acking its progress),
//! and looks again every second (every half lease, if that is shorter):
//! - the task ended → its stored terminal event is replayed, as for any duplicate;
//! - the claim is this run's (the holder is gone and its lease lapsed) → it resumes;
//! - a look that fails (the database is down) → it keeps standing by: the holder is
//!   the one responsible, and this delivery spends nothing while it waits.
//!
//! It waits at most [`MAX_STANDBY`], then is delivered again later (one delivery spent
//! per [`MAX_STANDBY`]). A standing-by delivery holds one of the intake's permits.

use std::time::Duration;

use switchyard_core::CommandEnvelope;

use super::{Disposition, HandleError, Pipeline};
use crate::store::Task;

/// The longest one delivery stands by for another run of its task.
pub(super) const MAX_STANDBY: Duration = Duration::from_secs(600);

/// How often a standing-by delivery looks at its task, at most (less with a short
/// lease: every half lease).
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// How a standby ended.
pub(super) enum Standby {
    /// The claim is this run's now: run the task.
    Claimed,
    /// Nothing to run: settle the delivery so.
    Settled(Disposition),
}

impl Pipeline {
    /// Waits while another run holds `task`'s claim (see the module's docs).
    pub(super) async fn stand_by(
        &self,
        task: &Task,
        run: &str,
        envelope: &CommandEnvelope,
    ) -> Result<Standby, HandleError> {
        metrics::counter!("switchyard_commands_standing_by_total").increment(1);
        tracing::debug!(task_id = task.id, "the task runs elsewhere; standing by");
        let every = (self.lease / 2).min(LOOK_EVERY);
        let until = tokio::time::Instant::now() + self.max_standby;
        while tokio::time::Instant::now() < until {
            tokio::time::sleep(every).await;
            match self.store.get_task(task.id).await {
                Ok(Some(now)) if now.status.is_terminal() => {
                    self.replay(&now, envelope).await?;
                    return Ok(Standby::Settled(Disposition::Ack));
                }
                // Gone (deleted by retention or an operator): nothing left to run.
                Ok(None) => return Ok(Standby::Settled(Disposition::Ack)),
                Ok(Some(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, task_id = task.id, "cannot look at the task; still standing by");
                    continue;
                }
            }
            match self.writes.claim_task(self.claim(task.id, run)).await {
                Ok(true) => return Ok(Standby::Claimed),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, task_id = task.id, "cannot claim the task; still standing by");
                }
            }
        }
        Ok(Standby::Settled(Disposition::Busy(every)))
    }
}
