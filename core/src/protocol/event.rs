//! Lifecycle and result events (PROTOCOL.md §3), published on
//! `switchyard.evt.<tenant>.<request_id>.<type>`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error_code::ErrorCode;
use crate::{
    ids::{ConfigId, RequestId, Tenant},
    kind::Kind,
    protocol::command::Strategy,
    provider::ProviderType,
};

/// One event. `seq` runs 1, 2, 3 … per request without gaps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// Protocol version.
    pub v: u32,
    /// The request this event belongs to.
    pub request_id: RequestId,
    /// The request's tenant.
    pub tenant: Tenant,
    /// Position in the request's event sequence, from 1.
    pub seq: u64,
    /// When the event was made.
    pub time: DateTime<Utc>,
    /// The `type` and its fields.
    #[serde(flatten)]
    pub body: EventBody,
}

impl Event {
    /// The event's type.
    pub fn event_type(&self) -> EventType {
        self.body.event_type()
    }

    /// Whether this is the request's terminal event.
    pub fn is_terminal(&self) -> bool {
        self.event_type().is_terminal()
    }
}

/// The type-specific part of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    /// The command was parsed and persisted.
    Accepted {
        /// The task row's id.
        task_id: i64,
        /// The command's kind.
        kind: Kind,
    },
    /// An attempt begins on an instance.
    Started {
        /// 1-based attempt number.
        attempt: u32,
        /// The instance.
        provider: ProviderRef,
    },
    /// A long job reports progress.
    Progress {
        /// 0–1.
        progress: f64,
        /// The instance.
        provider: ProviderRef,
    },
    /// A piece of streamed text.
    Chunk {
        /// 0-based chunk index.
        index: u32,
        /// The new text.
        delta: String,
    },
    /// Terminal: success.
    Completed {
        /// What was made.
        output: Output,
        /// Usage and cost.
        usage: Usage,
        /// The instance that made it.
        provider: ProviderRef,
        /// Every attempt, in order.
        attempts: Vec<Attempt>,
        /// Why the router chose what it chose.
        routing: Option<Routing>,
        /// From acceptance to completion.
        latency_ms: u64,
        /// Answered from the cache.
        cached: bool,
        /// Answered from the cache because every provider failed
        /// (`route.fallback_to_cache`): an earlier answer, not a fresh one.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        stale: bool,
    },
    /// Terminal: failure.
    Failed {
        /// What went wrong.
        error: ErrorInfo,
        /// Every attempt, in order.
        attempts: Vec<Attempt>,
        /// Why the router chose what it chose (absent when routing never ran).
        routing: Option<Routing>,
        /// From acceptance to failure.
        latency_ms: u64,
        /// For streamed text: how many chunks reached the client before the failure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chunks_delivered: Option<u32>,
    },
}

impl EventBody {
    /// The event's type.
    pub fn event_type(&self) -> EventType {
        match self {
            EventBody::Accepted { .. } => EventType::Accepted,
            EventBody::Started { .. } => EventType::Started,
            EventBody::Progress { .. } => EventType::Progress,
            EventBody::Chunk { .. } => EventType::Chunk,
            EventBody::Completed { .. } => EventType::Completed,
            EventBody::Failed { .. } => EventType::Failed,
        }
    }
}

/// The `type` of an event; also the last token of its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// See [`EventBody::Accepted`].
    Accepted,
    /// See [`EventBody::Started`].
    Started,
    /// See [`EventBody::Progress`].
    Progress,
    /// See [`EventBody::Chunk`].
    Chunk,
    /// See [`EventBody::Completed`].
    Completed,
    /// See [`EventBody::Failed`].
    Failed,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Accepted => "accepted",
            EventType::Started => "started",
            EventType::Progress => "progress",
            EventType::Chunk => "chunk",
            EventType::Completed => "completed",
            EventType::Failed => "failed",
        }
    }

    /// `completed` and `failed` end a request.
    pub fn is_terminal(self) -> bool {
        matches!(self, EventType::Completed | EventType::Failed)
    }
}

/// `provider` = `{config_id, name, type, model}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderRef {
    /// The config's id.
    pub config_id: ConfigId,
    /// The config's unique name.
    pub name: String,
    /// The provider type.
    #[serde(rename = "type")]
    pub provider_type: ProviderType,
    /// The model used.
    pub model: Option<String>,
}

/// What a request produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Output {
    /// Stored images (bytes live in the artifact store).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<OutputImage>,
    /// The full text, for `text.generate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OutputImage {
    /// Artifact store id.
    pub artifact_id: String,
    /// Where `GET` fetches the bytes.
    pub url: String,
    /// e.g. `image/png`.
    pub mime: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// The seed used, when the provider reports one.
    pub seed: Option<i64>,
    /// The prompt as the provider rewrote it.
    pub revised_prompt: Option<String>,
}

/// `usage` = `{images, input_tokens, output_tokens, cost_usd}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    /// Images made.
    pub images: u32,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Estimated cost from the config's cost table.
    pub cost_usd: f64,
}

/// One attempt on one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Attempt {
    /// The instance tried.
    pub config_id: ConfigId,
    /// How it ended.
    pub outcome: AttemptResult,
    /// The error code when it failed.
    pub error_code: Option<ErrorCode>,
    /// How long it took.
    pub latency_ms: u64,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptResult {
    /// The instance produced the output.
    Succeeded,
    /// The instance failed; see `error_code`.
    Failed,
}

/// `routing` = `{strategy, candidates, skipped}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Routing {
    /// The strategy that ordered the candidates.
    pub strategy: Strategy,
    /// The candidates in the order they were (or would have been) tried.
    pub candidates: Vec<ConfigId>,
    /// Instances left out, each with its reason.
    pub skipped: Vec<Skipped>,
}

/// An instance the router left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Skipped {
    /// The instance.
    pub config_id: ConfigId,
    /// Why.
    pub reason: SkipReason,
    /// For `cooling_down` and `breaker_open`: when the instance is back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// Why the router left an instance out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Its breaker is open.
    BreakerOpen,
    /// It is parked after a 429.
    CoolingDown,
    /// Its rate limiter has no token.
    LimiterFull,
    /// It does not serve the command's kind.
    KindMismatch,
    /// It does not serve the requested model.
    ModelMismatch,
    /// It is not of the requested provider type.
    ProviderMismatch,
    /// It cannot serve the requested size or `n`.
    CapabilityMismatch,
    /// It is disabled.
    Disabled,
    /// Its actor failed too often and is not restarted.
    Failed,
}

/// The `error` object of a `failed` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorInfo {
    /// The taxonomy code.
    pub code: ErrorCode,
    /// A human-readable message; never contains a secret.
    pub message: String,
    /// Whether the client may retry the command later.
    pub retryable: bool,
    /// The instance the final error came from, if any.
    #[serde(default)]
    pub provider: Option<ProviderRef>,
}

impl ErrorInfo {
    /// An error with the code's own retry verdict and no provider.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retryable: code.is_retryable(),
            provider: None,
        }
    }
}
