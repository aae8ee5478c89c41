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
        let body = EventBody::Failed {
            error: ErrorInfo::new(ErrorCode::InvalidRequest, message),
            attempts: Vec::new(),
            routing: None,
            latency_ms: 0,
            chunks_delivered: None,
        };
        let event = match lifecycle.next(body, chrono::Utc::now()) {
            Ok(event) => event,
            Err(refused) => return Err(HandleError::Lifecycle(refused.error)),
        };
        let encoded = StoredJson::encode(&event).map_err(BusError::Encode)?;
        let won = self
            .writes
            .fail_task(Failure {
                id: task.id,
                config_id: None,
                attempts: 0,
                code: ErrorCode::InvalidRequest,
                message: error_message(&event).to_owned(),
                terminal_event: encoded.clone(),
                usage: None,
                // Refused before admission: it holds nothing.
                held: false,
                attempt_log: Vec::new(),
            })
            .await?;
        if won {
            self.publish_terminal(&event, &encoded, envelope.reply_to.as_deref())
                .await?;
        }
        Ok(Disposition::Ack)
    }
}
