//! `persist`: the task row comes first. Its insert is the idempotency check on
//! `(tenant, request_id)`: it tells a new request from a duplicate or a resumption. A
//! command that parses but is invalid is stored too, with its one `failed` event.

use switchyard_core::{CommandEnvelope, ErrorCode, ErrorInfo, EventBody, Lifecycle};

use super::{Disposition, HandleError, Pipeline, settle::error_message};
use crate::{
    bus::{BusError, Delivery},
    store::{Failure, NewTask, StoredJson, TaskInsert},
};

impl Pipeline {
    /// A command that parses but is invalid: stored, and one `failed` event.
    pub(super) async fn reject(
        &self,
        envelope: &CommandEnvelope,
        kind_token: &str,
        delivery: &Delivery,
        message: String,
    ) -> Result<Disposition, HandleError> {
        let new_task = NewTask::invalid(
            &envelope.request_id,
            &envelope.tenant,
            kind_token,
            &delivery.payload,
        );
        let task = match self.writes.create_task(new_task).await? {
            TaskInsert::Created(task) | TaskInsert::Existing(task) => task,
        };
        if task.status.is_terminal() {
            self.replay(&task, envelope).await?;
            return Ok(Disposition::Ack);
        }
        let mut lifecycle = Lifecycle::resume(
            envelope.request_id.clone(),
            envelope.tenant.clone(),
            u64::try_from(task.last_seq).unwrap_or(0),
        );
        let event = match lifecycle.next(invalid_request(message), chrono::Utc::now()) {
            Ok(event) => event,
            Err(refused) => return Err(HandleError::Lifecycle(refused.error)),
        };
        let encoded = StoredJson::encode(&event).map_err(BusError::Encode)?;
        let won = self
            .writes
            .fail_task(unstarted_failure(
                task.id,
                error_message(&event).to_owned(),
                encoded.clone(),
            ))
            .await?;
        if won {
            self.publish_terminal(&event, &encoded, envelope.reply_to.as_deref())
                .await?;
        }
        Ok(Disposition::Ack)
    }
}

/// The `failed` body of a request that ends `invalid_request` before any attempt.
pub(super) fn invalid_request(message: String) -> EventBody {
    EventBody::Failed {
        error: ErrorInfo::new(ErrorCode::InvalidRequest, message),
        attempts: Vec::new(),
        routing: None,
        latency_ms: 0,
        chunks_delivered: None,
    }
}

/// The row write of such a request: no attempt, nothing charged, and (ended before
/// admission) no quota held.
pub(super) fn unstarted_failure(id: i64, message: String, terminal_event: StoredJson) -> Failure {
    Failure {
        id,
        config_id: None,
        attempts: 0,
        code: ErrorCode::InvalidRequest,
        message,
        terminal_event,
        usage: None,
        held: false,
        attempt_log: Vec::new(),
    }
}
