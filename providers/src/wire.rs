//! What every HTTP adapter shares: the process-wide client pool, sending with the
//! account's credentials, mapping provider answers onto the error taxonomy, bounded
//! body reads, server-sent events, result-URL downloads and scrubbing raw answers.
//!
//! Classification follows `reference/provider-apis.md`: the HTTP status decides first,
//! each provider's error body then refines it (content-policy refusals, billing) and
//! supplies the message. A body that is not JSON (a load balancer's HTML page) still
//! yields a clear error from its status alone.

use std::{sync::OnceLock, time::Duration};

use futures_util::{Stream, StreamExt};
use reqwest::{RequestBuilder, Response, StatusCode, header::HeaderMap};
use serde::de::DeserializeOwned;
use serde_json::Value;
use switchyard_core::{ApiKey, ErrorCode, ProviderType};

use super::{
    AttemptError,
    sse::{SseDecoder, SseEvent},
};

mod credentials;

pub(crate) use credentials::{Authorize, Credentials, KeyIn};

/// Largest JSON answer read (base64 images make answers big).
pub(crate) const MAX_JSON_BYTES: usize = 96 * 1024 * 1024;
/// Largest error body read.
const MAX_ERROR_BYTES: usize = 64 * 1024;
/// Largest image downloaded from a provider's result URL.
pub(crate) const MAX_IMAGE_BYTES: usize = 64 * 1024 * 1024;
/// Longest provider message kept in an error.
const MAX_MESSAGE_CHARS: usize = 500;

/// Makes ring the process's TLS crypto provider (as async-nats uses it). Call before
/// building any other reqwest client; calling it again is harmless.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The process-wide HTTP client: one connection pool for every adapter (and plugin).
pub fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            install_tls();
            reqwest::Client::builder()
                // Redirects could lead a download, an input image or a plugin off its
                // allowed hosts: a 3xx is an answer, not a detour.
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(10))
                .pool_idle_timeout(Duration::from_secs(90))
                .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "cannot build the tuned HTTP client; using defaults");
                    reqwest::Client::new()
                })
        })
        .clone()
}

/// What a provider's error body says beyond its status.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Refined {
    /// A code that overrides the status's.
    pub code: Option<ErrorCode>,
    /// The provider's own message.
    pub message: Option<String>,
    /// A back-off hint found in the body (Gemini's `RetryInfo`).
    pub retry_after_ms: Option<u64>,
}

/// Reads a provider's error body (parsed JSON) for a status.
pub(crate) type Refine = fn(StatusCode, &Value) -> Refined;

/// One account's endpoint: base URL, credentials and how its errors read.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    pub client: reqwest::Client,
    pub provider: ProviderType,
    base: String,
    credentials: Credentials,
    refine: Refine,
}

impl Api {
    /// An endpoint at `base_url` (or the provider's public one).
    pub fn new(
        provider: ProviderType,
        base_url: Option<&str>,
        default_base: &str,
        key: Option<ApiKey>,
        refine: Refine,
    ) -> Self {
        Self {
            client: client(),
            provider,
            base: base_url
                .unwrap_or(default_base)
                .trim_end_matches('/')
                .to_owned(),
            credentials: key.map_or(Credentials::None, Credentials::Key),
            refine,
        }
    }

    /// The endpoint of a config: its `base_url` (or the provider's public one) and
    /// credentials. A tenant's own account (`owner`) is reached through the outbound
    /// guard's client: its endpoint came from a tenant, not from the operator.
    pub fn for_config(
        config: &switchyard_core::ProviderConfig,
        default_base: &str,
        refine: Refine,
    ) -> Self {
        let guarded = config.spec.owner.is_some();
        let client = if guarded {
            switchyard_guard::Guard::installed().provider_client()
        } else {
            client()
        };
        let credentials = match config.spec.auth.oauth2() {
            Some(oauth) => {
                Credentials::OAuth2(crate::oauth::source_for(oauth, &client, guarded, None))
            }
            None => config
                .spec
                .api_key
                .clone()
                .map_or(Credentials::None, Credentials::Key),
        };
        Self {
            client,
            provider: config.spec.provider,
            base: config
                .spec
                .base_url
                .as_deref()
                .unwrap_or(default_base)
                .trim_end_matches('/')
                .to_owned(),
            credentials,
            refine,
        }
    }

    /// A health probe for APIs without a free read endpoint: an authenticated request
    /// the API refuses as invalid (free) proves the key; 401/403 disprove it.
    pub async fn probe(&self, request: RequestBuilder) -> Result<(), AttemptError> {
        match self.send(request).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == ErrorCode::InvalidRequest => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; connection failures and non-2xx answers become errors.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, AttemptError> {
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.error_from(response).await)
        }
    }

    /// A transport failure (no HTTP answer) as an attempt error.
    pub fn transport_error(&self, error: &reqwest::Error) -> AttemptError {
        let code = if error.is_timeout() {
            ErrorCode::Timeout
        } else {
            ErrorCode::ProviderUnavailable
        };
        let detail = describe_transport(error);
        AttemptError::new(code, self.redact(&format!("{}: {detail}", self.provider)))
    }

    /// Turns a non-2xx answer into an attempt error.
    pub async fn error_from(&self, response: Response) -> AttemptError {
        let status = response.status();
        // The token this answer refused, if it was one: still scrubbed from the error
        // below, then dropped so that the next attempt fetches a new one.
        let refused = match (&self.credentials, status) {
            (Credentials::OAuth2(tokens), StatusCode::UNAUTHORIZED) => {
                tokens.current().map(|token| (tokens, token))
            }
            _ => None,
        };
        let headers = response.headers().clone();
        let body = read_limited(response, MAX_ERROR_BYTES)
            .await
            .unwrap_or_default();
        let error = self.classify(status, &headers, &body);
        if let Some((tokens, token)) = refused {
            tokens.reject(&token);
        }
        error
    }

    /// The taxonomy code, message and back-off of an error answer.
    pub fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> AttemptError {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let refined = parsed
            .as_ref()
            .map(|v| (self.refine)(status, unwrap_single_array(v)))
            .unwrap_or_default();
        let code = refined.code.unwrap_or_else(|| status_code(status));
        let message = refined
            .message
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| fallback_message(status, body));
        let mut error = AttemptError::new(
            code,
            self.redact(&format!(
                "{} answered {}: {}",
                self.provider,
                status.as_u16(),
                truncate(&message, MAX_MESSAGE_CHARS)
            )),
        );
        if code == ErrorCode::RateLimited {
            error.retry_after_ms = retry_after_ms(headers).or(refined.retry_after_ms);
        }
        error
    }

    /// Reads a whole answer body (up to [`MAX_JSON_BYTES`]) for an adapter's reader.
    pub async fn body(&self, response: Response) -> Result<Vec<u8>, AttemptError> {
        read_limited(response, MAX_JSON_BYTES)
            .await
            .map_err(|e| self.transport_error(&e))
    }

    /// Parses a JSON answer body into `T` (and the raw value).
    pub fn parse<T: DeserializeOwned>(&self, body: &[u8]) -> Result<(T, Value), AttemptError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| self.malformed(&e))?;
        let typed = T::deserialize(&value).map_err(|e| self.malformed(&e))?;
        Ok((typed, value))
    }

    /// A `provider_error` for an answer that does not have the documented shape. The
    /// reason may quote the answer (serde quotes a value of the wrong type), so the key
    /// is taken out of it like out of any other message.
    pub fn malformed(&self, what: &dyn std::fmt::Display) -> AttemptError {
        AttemptError::new(
            ErrorCode::ProviderError,
            self.redact(&format!(
                "{} sent a malformed answer: {what}",
                self.provider
            )),
        )
    }

    /// A `provider_error` with a message.
    pub fn error(&self, code: ErrorCode, message: impl std::fmt::Display) -> AttemptError {
        AttemptError::new(code, self.redact(&format!("{}: {message}", self.provider)))
    }

    /// Removes the account's key (or access token) from text that may reach events or
    /// logs.
    pub fn redact(&self, text: &str) -> String {
        let secret = match &self.credentials {
            Credentials::Key(key) => Some(key.clone()),
            Credentials::OAuth2(tokens) => tokens.current(),
            Credentials::None => None,
        };
        match secret {
            Some(key) if key.expose().len() >= 4 && text.contains(key.expose()) => {
                text.replace(key.expose(), "****")
            }
            _ => text.to_owned(),
        }
    }

    /// The server-sent events of a streaming answer ([`crate::sse`]); after an error
    /// the stream ends.
    pub fn events(
        &self,
        response: Response,
    ) -> impl Stream<Item = Result<SseEvent, AttemptError>> + Send + Unpin + use<> {
        struct Reading<B> {
            api: Api,
            body: B,
            decoder: SseDecoder,
            ready: std::collections::VecDeque<SseEvent>,
            failed: Option<AttemptError>,
            done: bool,
        }
        let reading = Reading {
            api: self.clone(),
            body: response.bytes_stream(),
            decoder: SseDecoder::new(),
            ready: std::collections::VecDeque::new(),
            failed: None,
            done: false,
        };
        Box::pin(futures_util::stream::unfold(reading, |mut r| async move {
            let mut decoded = Vec::new();
            loop {
                // The events before a failure first, then the failure, then nothing.
                if let Some(event) = r.ready.pop_front() {
                    return Some((Ok(event), r));
                }
                if let Some(error) = r.failed.take() {
                    return Some((Err(error), r));
                }
                if r.done {
                    return None;
                }
                match r.body.next().await {
                    Some(Ok(chunk)) => {
                        if let Err(e) = r.decoder.push(&chunk, &mut decoded) {
                            r.failed = Some(r.api.malformed(&e));
                            r.done = true;
                        }
                    }
                    Some(Err(e)) => {
                        r.failed = Some(r.api.stream_cut(&describe_transport(&e)));
                        r.done = true;
                    }
                    // An event the stream did not finish is no event (as the format says).
                    None => r.done = true,
                }
                r.ready.extend(decoded.drain(..));
            }
        }))
    }

    /// The error for a stream that ended before its terminator.
    pub fn stream_cut(&self, detail: &str) -> AttemptError {
        self.error(
            ErrorCode::ProviderUnavailable,
            format!("the stream was cut off before it finished ({detail})"),
        )
    }

    /// Downloads a result image from a provider URL, once, with a size cap. An
    /// expired or missing URL is a `provider_error`. A URL on the host of this
    /// account's endpoint (which the operator configured) is fetched like the API
    /// itself; any other host is the provider's say-so, so it goes through the process's
    /// outbound guard (a compromised provider cannot point the gateway inside).
    pub async fn download(&self, url: &str) -> Result<Vec<u8>, AttemptError> {
        if !self.same_host(url) {
            let guard = switchyard_guard::Guard::installed();
            let mut budget = switchyard_guard::Budget::new(MAX_IMAGE_BYTES);
            return match guard.get(url, &mut budget).await {
                Ok(fetched) => Ok(fetched.bytes),
                Err(switchyard_guard::FetchError::Status { status, .. }) => Err(self.error(
                    ErrorCode::ProviderError,
                    format!(
                        "the result image could not be downloaded: HTTP {status} (expired or missing URL {})",
                        scrub_url(url)
                    ),
                )),
                Err(e @ switchyard_guard::FetchError::Timeout { .. }) => {
                    Err(self.error(ErrorCode::Timeout, format!("the result image: {e}")))
                }
                Err(e) => Err(self.error(
                    ErrorCode::ProviderError,
                    format!("the result image could not be downloaded: {e}"),
                )),
            };
        }
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.error(
                ErrorCode::ProviderError,
                format!(
                    "the result image could not be downloaded: HTTP {} (expired or missing URL {})",
                    status.as_u16(),
                    scrub_url(url)
                ),
            ));
        }
        read_limited(response, MAX_IMAGE_BYTES)
            .await
            .map_err(|e| self.transport_error(&e))
    }
}

impl Api {
    /// Whether `url` is on the host (and port) of this account's endpoint.
    fn same_host(&self, url: &str) -> bool {
        let (Ok(url), Ok(base)) = (url::Url::parse(url), url::Url::parse(&self.base)) else {
            return false;
        };
        url.host() == base.host() && url.port_or_known_default() == base.port_or_known_default()
    }
}

/// The taxonomy code a status means before the body is read.
pub(crate) fn status_code(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        400 | 405 | 409 | 413 | 415 | 422 => ErrorCode::InvalidRequest,
        // 402: this account's billing; another account may serve the request.
        401..=403 => ErrorCode::Unauthorized,
        408 => ErrorCode::Timeout,
        429 => ErrorCode::RateLimited,
        500..=599 => ErrorCode::ProviderUnavailable,
        // 404 and the rest: this instance's model or endpoint is wrong.
        _ => ErrorCode::ProviderError,
    }
}

fn fallback_message(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let looks_like_text = !text.trim_start().starts_with('<') && !text.trim().is_empty();
    if looks_like_text {
        text.trim().to_owned()
    } else {
        status
            .canonical_reason()
            .unwrap_or("no readable error body")
            .to_owned()
    }
}

/// Some proxies wrap an error body in a one-element array.
fn unwrap_single_array(value: &Value) -> &Value {
    match value {
        Value::Array(items) if items.len() == 1 => &items[0],
        other => other,
    }
}

/// `retry-after-ms`, or `retry-after` in seconds or as an HTTP date.
pub(crate) fn retry_after_ms(headers: &HeaderMap) -> Option<u64> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(ms as u64);
    }
    let value = text("retry-after")?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then_some((seconds * 1000.0) as u64);
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let ms = (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds();
    Some(u64::try_from(ms).unwrap_or(0))
}

/// A Go/protobuf duration such as `26s`, `1.5s` or `120ms`, in ms.
pub(crate) fn duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (text, 1000.0)
    };
    let value = number.parse::<f64>().ok()?;
    (value.is_finite() && value >= 0.0).then_some((value * scale) as u64)
}

/// Reads a body up to `limit` bytes; a longer body is cut at the limit.
pub async fn read_limited(mut response: Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body)
}

fn describe_transport(error: &reqwest::Error) -> String {
    // Never the URL: it may carry a signature.
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else if error.is_body() || error.is_decode() {
        "the answer broke off".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A URL without its query string (signed URLs carry credentials there).
pub fn scrub_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_owned(),
    }
}

/// Fields that carry image data in the providers' answers.
const IMAGE_KEYS: &[&str] = &["b64_json", "base64", "data", "bytesBase64Encoded", "image"];

/// A provider's raw answer fit for the task row: base64 payloads replaced by their
/// size, signed URLs without their signatures.
pub(crate) fn scrub_raw(value: &Value) -> Value {
    match value {
        Value::String(s) if s.len() > 512 => Value::String(format!("<{} bytes omitted>", s.len())),
        Value::String(s) if s.starts_with("http") => Value::String(scrub_url(s)),
        Value::Array(items) => Value::Array(items.iter().map(scrub_raw).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| match v {
                    Value::String(s) if IMAGE_KEYS.contains(&k.as_str()) => (
                        k.clone(),
                        Value::String(format!("<{} bytes omitted>", s.len())),
                    ),
                    other => (k.clone(), scrub_raw(other)),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The string at a JSON pointer, if any.
pub(crate) fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

#[cfg(test)]
mod tests;
