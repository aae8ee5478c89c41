//! Generation commands (PROTOCOL.md §2): what upstream services publish on
//! `switchyard.cmd.<kind>`.
//!
//! Parsing happens in two steps so that bad input loses nothing: [`CommandEnvelope`]
//! pulls out only what an event subject needs (a command without it goes to the DLQ),
//! then [`Command`] parses the whole body and [`Command::validate`] checks the semantic
//! rules. Any failure after the envelope is an `invalid_request` for that request.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    ids::{RequestId, Tenant},
    kind::Kind,
    provider::{FieldError, ProviderType, ValidationError},
};

/// Commands larger than this are refused (NATS messages are capped at 1 MiB as well).
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024;

/// The most input images an `image.edit` takes.
pub const MAX_EDIT_IMAGES: usize = 10;
/// The longest fallback chain of models (`route.models`).
pub const MAX_MODELS: usize = 5;

/// The least a command must carry to be answered on an event subject.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CommandEnvelope {
    /// The idempotency key.
    pub request_id: RequestId,
    /// Scopes the event subjects.
    pub tenant: Tenant,
    /// Where the terminal event is also sent, if the client asked.
    #[serde(default)]
    pub reply_to: Option<String>,
}

impl CommandEnvelope {
    /// Parses the envelope out of a raw command body.
    ///
    /// # Errors
    /// A message for the DLQ when the body is not JSON, or lacks a valid `request_id`
    /// or `tenant`.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
        let object = value
            .as_object()
            .ok_or_else(|| "body is not a JSON object".to_owned())?;
        for field in ["request_id", "tenant"] {
            match object.get(field) {
                None | Some(Value::Null) => return Err(format!("missing {field}")),
                Some(Value::String(s)) => {
                    crate::ids::check_subject_token(s)
                        .map_err(|e| format!("{field} is invalid: {e}"))?;
                }
                Some(_) => return Err(format!("{field} must be a string")),
            }
        }
        serde_json::from_value(value).map_err(|e| format!("envelope: {e}"))
    }
}

/// A generation command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Command {
    /// Protocol version (default 1).
    #[serde(default = "default_version")]
    pub v: u32,
    /// Client-chosen unique id; the idempotency key together with `tenant`.
    pub request_id: RequestId,
    /// Who pays; whose quota is used.
    pub tenant: Tenant,
    /// End user inside the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What is asked for; must equal the `<kind>` of the subject.
    pub kind: Kind,
    /// The capability input.
    pub input: CommandInput,
    /// Routing hints.
    #[serde(default)]
    pub route: Route,
    /// Provider-specific pass-through.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
    /// May answer from an identical earlier request's result.
    #[serde(default)]
    pub cache: bool,
    /// 1 = urgent … 10 = background (default 5).
    #[serde(default = "default_priority")]
    pub priority: i64,
    /// Fail with `timeout` when not done within this many ms of acceptance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<i64>,
    /// The terminal event is also core-published here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Free-form client metadata, stored with the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

fn default_version() -> u32 {
    super::PROTOCOL_VERSION
}

fn default_priority() -> i64 {
    5
}

/// The `input` object; which fields apply depends on the kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommandInput {
    /// Image kinds: what to draw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Image kinds: what to avoid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Image kinds: how many images (1–10, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<i64>,
    /// Image kinds: `WxH` or a provider size token such as `2K`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Image kinds: e.g. `16:9`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
    /// Image kinds: provider quality setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    /// Image kinds: provider style setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    /// Image kinds: generation seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Image kinds: `png`, `jpeg` or `webp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    /// `image.edit`: 1–10 input images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<ImageRef>>,
    /// `image.edit`: optional mask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<ImageRef>,
    /// `text.generate`: the conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    /// `text.generate`: system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// `text.generate`: output token cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// `text.generate`: sampling temperature (0–2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// `text.generate`: nucleus sampling (0–1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// `text.generate`: stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    /// `text.generate`: emit `chunk` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// A stored prompt template to render (an extension): for image kinds the
    /// rendered text becomes `prompt`, for `text.generate` it becomes `system`; the
    /// request's own `prompt` and `system` are variables of the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRef>,
}

/// `input.template`: a stored template by name, and its variables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateRef {
    /// The template's name.
    pub name: String,
    /// Values for the template's variables.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub variables: Map<String, Value>,
}

/// An input image: exactly one of `url`, `artifact_id` or `b64` (with `mime`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageRef {
    /// Fetched by the runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// An artifact already in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_id: Option<String>,
    /// Inline base64 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64: Option<String>,
    /// Mime type of `b64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
}

/// Routing hints (`route`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Route {
    /// Use exactly this instance: its id or unique name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_id: Option<ConfigRef>,
    /// `auto` or one provider type.
    #[serde(default)]
    pub provider: ProviderSelector,
    /// Only instances serving this model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A fallback chain of models (instead of `model`): each model's instances are
    /// tried in turn, the next model's after the previous model's failed retryably.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// When every provider has failed, answer with the most recent identical
    /// completed result (marked `cached` and `stale`), if there is one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fallback_to_cache: bool,
    /// How candidates are ordered.
    #[serde(default)]
    pub strategy: Strategy,
    /// On a retryable failure, try the next candidate.
    #[serde(default = "default_true")]
    pub fallback: bool,
    /// Attempts over all candidates (1–10, default 3).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: i64,
}

impl Default for Route {
    fn default() -> Self {
        Self {
            config_id: None,
            provider: ProviderSelector::Auto,
            model: None,
            models: Vec::new(),
            fallback_to_cache: false,
            strategy: Strategy::Priority,
            fallback: true,
            max_attempts: default_max_attempts(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_max_attempts() -> i64 {
    3
}

/// `route.config_id`: an integer id or a unique config name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ConfigRef {
    /// The config's database id.
    Id(i64),
    /// The config's unique name.
    Name(String),
}

/// `route.provider`: `auto` or a provider type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ProviderSelector {
    /// Any instance.
    #[default]
    Auto,
    /// Only instances of this type.
    Type(ProviderType),
}

impl TryFrom<String> for ProviderSelector {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value == "auto" {
            return Ok(Self::Auto);
        }
        value.parse::<ProviderType>().map(Self::Type)
    }
}

impl JsonSchema for ProviderSelector {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ProviderSelector".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = std::iter::once("auto")
            .chain(ProviderType::ALL.iter().map(|t| t.as_str()))
            .collect();
        schemars::json_schema!({
            "type": "string",
            "enum": names,
            "description": "`auto` (any instance) or one provider type.",
        })
    }
}

impl From<ProviderSelector> for String {
    fn from(value: ProviderSelector) -> Self {
        match value {
            ProviderSelector::Auto => "auto".to_owned(),
            ProviderSelector::Type(t) => t.as_str().to_owned(),
        }
    }
}

/// `route.strategy`: how candidates are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Higher priority first; weight breaks ties.
    #[default]
    Priority,
    /// Random, proportional to weight.
    Weighted,
    /// Rotate through the candidates.
    RoundRobin,
    /// Lowest in-flight / capacity first.
    LeastBusy,
    /// Lowest observed latency (EWMA) first; unknown instances first of all.
    Latency,
    /// Cheapest estimated cost for this request first.
    Cost,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// The body is larger than [`MAX_COMMAND_BYTES`].
    #[error("command is {0} bytes, more than the 1 MiB limit")]
    TooLarge(usize),
    /// The body did not parse as a command.
    #[error("command does not parse: {0}")]
    Malformed(String),
    /// The command parsed but breaks a rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl Command {
    /// A command with every optional field at the protocol's default (as a body that
    /// leaves them out parses to): `v` 1, the default route, priority 5, no `params`,
    /// no `cache`, no deadline, no `reply_to`, no metadata.
    pub fn new(request_id: RequestId, tenant: Tenant, kind: Kind, input: CommandInput) -> Self {
        Self {
            v: default_version(),
            request_id,
            tenant,
            user: None,
            kind,
            input,
            route: Route::default(),
            params: Map::new(),
            cache: false,
            priority: default_priority(),
            deadline_ms: None,
            reply_to: None,
            metadata: None,
        }
    }

    /// Images this command asks for: `input.n` (default 1) for image kinds, 0 for text.
    pub fn images_asked(&self) -> i64 {
        if self.kind.is_image() {
            self.input.n.unwrap_or(1).max(1)
        } else {
            0
        }
    }

    /// Parses a raw body (after [`CommandEnvelope::parse`] has accepted it).
    ///
    /// # Errors
    /// [`CommandError::TooLarge`] or [`CommandError::Malformed`].
    pub fn parse(body: &[u8]) -> Result<Self, CommandError> {
        if body.len() > MAX_COMMAND_BYTES {
            return Err(CommandError::TooLarge(body.len()));
        }
        // The path names the field a type error is in (`input.n: invalid type …`).
        let mut json = serde_json::Deserializer::from_slice(body);
        let command: Self = serde_path_to_error::deserialize(&mut json).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            CommandError::Malformed(if path == "." || path.is_empty() {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            })
        })?;
        json.end()
            .map_err(|e| CommandError::Malformed(e.to_string()))?;
        Ok(command)
    }

    /// Parses and validates; `subject_kind` is the `<kind>` of the subject it came on.
    ///
    /// # Errors
    /// Any [`CommandError`].
    pub fn parse_and_validate(
        body: &[u8],
        subject_kind: Option<Kind>,
    ) -> Result<Self, CommandError> {
        let command = Self::parse(body)?;
        // JSON carries a NUL only as the escape `\u0000` (a raw NUL byte is not valid
        // JSON), so a body without one needs no walk of the parsed command.
        command.check(subject_kind, nul::escaped_in(body))?;
        Ok(command)
    }

    /// Checks the semantic rules of PROTOCOL.md §2, collecting every problem.
    ///
    /// # Errors
    /// [`ValidationError`] naming each bad field.
    pub fn validate(&self, subject_kind: Option<Kind>) -> Result<(), ValidationError> {
        self.check(subject_kind, true)
    }

    /// [`Self::validate`], looking for NUL characters only when `may_hold_nul`.
    fn check(&self, subject_kind: Option<Kind>, may_hold_nul: bool) -> Result<(), ValidationError> {
        let mut errors = Vec::new();
        let mut bad = |path: &str, message: String| errors.push(FieldError::new(path, message));
        if self.v != super::PROTOCOL_VERSION {
            bad("v", format!("unsupported protocol version {}", self.v));
        }
        if let Some(subject_kind) = subject_kind
            && subject_kind != self.kind
        {
            bad(
                "kind",
                format!(
                    "is '{}' but the command came on the '{subject_kind}' subject",
                    self.kind
                ),
            );
        }
        if !(1..=10).contains(&self.priority) {
            bad("priority", format!("must be 1–10, got {}", self.priority));
        }
        if let Some(deadline) = self.deadline_ms
            && deadline <= 0
        {
            bad("deadline_ms", format!("must be > 0, got {deadline}"));
        }
        if !(1..=10).contains(&self.route.max_attempts) {
            bad(
                "route.max_attempts",
                format!("must be 1–10, got {}", self.route.max_attempts),
            );
        }
        if !self.route.models.is_empty() {
            if self.route.model.is_some() {
                bad(
                    "route.models",
                    "give either route.model or route.models, not both".to_owned(),
                );
            }
            if self.route.config_id.is_some() {
                bad(
                    "route.models",
                    "route.config_id pins one instance: a chain of models does not apply"
                        .to_owned(),
                );
            }
            if self.route.models.len() > MAX_MODELS {
                bad(
                    "route.models",
                    format!(
                        "at most {MAX_MODELS} models, got {}",
                        self.route.models.len()
                    ),
                );
            }
            for (i, model) in self.route.models.iter().enumerate() {
                if model.trim().is_empty() || model.len() > 200 {
                    bad(
                        &format!("route.models[{i}]"),
                        "must be 1–200 characters".to_owned(),
                    );
                }
            }
        }
        if let Some(reply_to) = &self.reply_to
            && (reply_to.is_empty() || reply_to.contains(char::is_whitespace))
        {
            bad(
                "reply_to",
                "must be a NATS subject without spaces".to_owned(),
            );
        }
        let input = &self.input;
        match self.kind {
            Kind::ImageGenerate | Kind::ImageEdit => {
                inputs::validate_image_input(input, self.kind, &mut bad)
            }
            Kind::TextGenerate => inputs::validate_text_input(input, &mut bad),
        }
        if may_hold_nul && let Ok(whole) = serde_json::to_value(self) {
            for path in nul::paths(&whole) {
                bad(
                    &path,
                    "holds a NUL character (\\u0000), which cannot be stored".to_owned(),
                );
            }
        }
        ValidationError::from_errors(errors)
    }

    /// What the command's chat messages carry besides text.
    pub fn carried(&self) -> Carried {
        self.input
            .messages
            .as_deref()
            .map(Carried::by)
            .unwrap_or_default()
    }

    /// How many images are asked for (1 when unset).
    pub fn image_count(&self) -> u32 {
        self.input
            .n
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1)
    }
}

impl ImageRef {
    /// Checks that exactly one source is given.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn check(&self) -> Result<(), String> {
        let given = [
            self.url.is_some(),
            self.artifact_id.is_some(),
            self.b64.is_some(),
        ]
        .into_iter()
        .filter(|g| *g)
        .count();
        if given != 1 {
            return Err("must have exactly one of url, artifact_id or b64".to_owned());
        }
        if let Some(url) = &self.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err("url must be http:// or https://".to_owned());
        }
        if self.artifact_id.as_deref() == Some("") {
            return Err("artifact_id must not be empty".to_owned());
        }
        if let Some(b64) = &self.b64 {
            if b64.is_empty() {
                return Err("b64 must not be empty".to_owned());
            }
            if self.mime.is_none() {
                return Err("b64 needs a mime type".to_owned());
            }
        }
        Ok(())
    }
}

mod inputs;
mod message;
mod nul;
mod parts;

pub use message::{Message, Role};

pub use parts::{Carried, ContentPart, FileData, InputAudio, MediaUrl, data_url};

pub(crate) use inputs::is_valid_size;

/// Whether a NUL character is anywhere in `value` (keys and strings).
pub(crate) fn nul_in(value: &Value) -> bool {
    !nul::paths(value).is_empty()
}

#[cfg(test)]
mod robustness;
#[cfg(test)]
mod tests;
