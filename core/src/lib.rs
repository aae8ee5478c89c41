//! Switchyard's domain: the wire contract of `PROTOCOL.md`, provider configs and their
//! validation.
//!
//! Code map:
//! - [`protocol`]: commands, events, error codes and NATS subjects, with exactly the
//!   field names of `PROTOCOL.md` (serde).
//! - [`provider`]: provider types, the provider config (draft → validated spec → stored
//!   config), field-level validation, and the [`ApiKey`] secret type that masks itself.
//! - [`ids`]: newtypes for identifiers (`ConfigId`, `RequestId`, `Tenant`).
//! - [`lifecycle`]: the request lifecycle as pure state: which event may come next,
//!   its `seq`, one terminal event.
//! - `fuzzing` (hidden from the docs): the command fuzz target's entry point.
//!
//! Invariants:
//! - This crate performs no I/O and depends on no async runtime, database, HTTP or NATS
//!   client (`tests/it/architecture.rs` checks it). Time is passed in, never read.
//! - A [`provider::ProviderSpec`] only exists after [`provider::ProviderConfigDraft::validate`]
//!   accepted every field.

#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
pub mod kind;
pub mod lifecycle;
pub mod protocol;
pub mod provider;
pub mod redact;
pub mod reload;
pub mod resilience;
pub mod routing;

pub use ids::{ConfigId, IdError, RequestId, Tenant};
pub use kind::Kind;
pub use lifecycle::{Lifecycle, LifecycleError, Refused};
pub use protocol::{
    Attempt, AttemptResult, Carried, Command, CommandEnvelope, CommandError, CommandInput,
    ConfigRef, ContentPart, ErrorCode, ErrorInfo, Event, EventBody, EventType, FileData, ImageRef,
    InputAudio, MAX_EDIT_IMAGES, MediaUrl, Message, Output, OutputImage, ProviderRef,
    ProviderSelector, ReplyToPolicy, Role, Route, Routing, SkipReason, Skipped, Strategy, Subjects,
    TemplateRef, Usage, data_url,
};
pub use provider::{
    ApiKey, BreakerDraft, BreakerSettings, CostTable, FieldError, MockOptions, OAuth2,
    OAuth2ClientAuth, OAuth2Grant, Presets, ProviderAuth, ProviderConfig, ProviderConfigDraft,
    ProviderSpec, ProviderType, RateLimit, RateLimitDraft, Supports, ValidationError,
};
pub use redact::redact_url;
