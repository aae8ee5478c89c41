//! The wire contract of `PROTOCOL.md`: commands (§2), events (§3), error codes and
//! NATS subjects (§1). Field names are exactly those of the protocol; additions are
//! optional fields only, so existing clients keep working.

mod command;
mod error_code;
mod event;
mod reply_to;
pub mod schema;
mod subjects;

pub use command::{
    Carried, Command, CommandEnvelope, CommandError, CommandInput, ConfigRef, ContentPart,
    FileData, ImageRef, InputAudio, MAX_COMMAND_BYTES, MAX_EDIT_IMAGES, MAX_MODELS, MediaUrl,
    Message, ProviderSelector, Role, Route, Strategy, TemplateRef, data_url,
};
pub(crate) use command::{is_valid_size, nul_in};
pub use error_code::ErrorCode;
pub use event::{
    Attempt, AttemptResult, ErrorInfo, Event, EventBody, EventType, Output, OutputImage,
    ProviderRef, Routing, SkipReason, Skipped, Usage,
};
pub use reply_to::{ReplyToPolicy, check_subject};
pub use subjects::{Subjects, subject_matches};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
