//! What is stored when a command is accepted: the task row's fields, its named
//! parameters, and the cache key that makes two commands "identical requests".

use serde_json::{Value, value::RawValue};
use switchyard_core::{Command, RequestId, Tenant};

use super::StoredJson;

/// What is stored when a command is accepted.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Idempotency key, with `tenant`.
    pub request_id: RequestId,
    /// Owner.
    pub tenant: Tenant,
    /// End user.
    pub user: Option<String>,
    /// Kind (as sent: an invalid command may name an unknown one).
    pub kind: String,
    /// Prompt (image kinds) or last user message (text).
    pub prompt: Option<String>,
    /// Input image references (`image.edit`).
    pub input_images: Option<Value>,
    /// Requested model.
    pub model: Option<String>,
    /// Requested size.
    pub size: Option<String>,
    /// The whole command, so any process can resume it.
    pub command: StoredJson,
    /// Named generation parameters (`task_parameters` rows): the input's settings and
    /// the command's `params`, as text.
    pub parameters: Vec<(String, String)>,
    /// The key of the generation input ([`cache_key`]), so a later `cache: true`
    /// command (or a stale fallback) can find this one's result; only for a `cache: true`
    /// or `route.fallback_to_cache` command.
    pub cache_key: Option<String>,
    /// `last_seq` to store: 1 for a valid command, whose `accepted` event is seq 1 (so
    /// a process that resumes it after a crash continues after it even when the crash
    /// came before the attempt start was recorded), 0 for an invalid one (its `failed`
    /// event is seq 1).
    pub last_seq: i64,
    /// The claim a new row is created with (`owner`, lapsing at `until_ms`, Unix ms),
    /// so the run that inserts a task holds it without a second write. An existing
    /// row is never claimed by the insert: that takes a [`crate::Claim`].
    pub claim: Option<(String, i64)>,
    /// The batch it belongs to and its index there (#18 §9): such a task waits for
    /// the batch dispatcher to queue it.
    pub batch: Option<(String, i64)>,
}

/// What makes two commands "identical requests" for `cache: true` (PROTOCOL.md §2):
/// the first half of the hex SHA-256 of the tenant, the kind, the whole input, the route's instance,
/// provider type and model, and the params — as canonical JSON (object keys sorted),
/// so the order a client wrote them in does not matter. The tenant is part of it:
/// one tenant's results never answer another's requests.
pub fn cache_key(command: &Command) -> String {
    use sha2::{Digest, Sha256};
    // Whether the answer is streamed is no part of what is asked (#18 §6).
    let mut input = serde_json::to_value(&command.input).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut input {
        fields.remove("stream");
    }
    let mut key = serde_json::json!([
        command.tenant.as_str(),
        command.kind.as_str(),
        input,
        &command.route.config_id,
        &command.route.provider,
        &command.route.model,
        &command.params,
    ]);
    // A chain of models is part of what was asked (only when given, so the keys of
    // requests without one stay as they were).
    if !command.route.models.is_empty()
        && let Value::Array(parts) = &mut key
    {
        parts.push(serde_json::json!(command.route.models));
    }
    let mut canonical = Vec::new();
    write_canonical(&key, &mut canonical);
    // 128 bits: index entries stay small, and a collision within one tenant is out
    // of reach (2^64 requests).
    hex::encode(&Sha256::digest(&canonical)[..16])
}

/// JSON with object keys sorted at every level.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(&Value::String(key.clone()), out);
                out.push(b':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// The `task_parameters` rows of a command: every generation setting it gives.
fn parameters_of(command: &Command) -> Vec<(String, String)> {
    let input = &command.input;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            out.push((name.to_owned(), value));
        }
    };
    put("n", input.n.map(|n| n.to_string()));
    put("size", input.size.clone());
    put("aspect_ratio", input.aspect_ratio.clone());
    put("quality", input.quality.clone());
    put("style", input.style.clone());
    put("seed", input.seed.map(|s| s.to_string()));
    put("output_format", input.output_format.clone());
    put("negative_prompt", input.negative_prompt.clone());
    put("max_tokens", input.max_tokens.map(|m| m.to_string()));
    put("temperature", input.temperature.map(|t| t.to_string()));
    put("top_p", input.top_p.map(|t| t.to_string()));
    put("stream", input.stream.map(|s| s.to_string()));
    put(
        "route.strategy",
        serde_json::to_value(command.route.strategy)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned)),
    );
    for (key, value) in &command.params {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push((format!("params.{key}"), text));
    }
    out
}

impl NewTask {
    /// The task row for a command.
    pub fn from_command(command: &Command) -> Self {
        let input = &command.input;
        let prompt = input.prompt.clone().or_else(|| {
            input
                .messages
                .as_ref()
                .and_then(|m| m.iter().rev().find(|m| !m.content.is_empty()))
                .map(|m| m.content.clone())
        });
        Self {
            request_id: command.request_id.clone(),
            tenant: command.tenant.clone(),
            user: command.user.clone(),
            kind: command.kind.as_str().to_owned(),
            prompt,
            input_images: input
                .images
                .as_ref()
                .and_then(|images| serde_json::to_value(images).ok()),
            model: command.route.model.clone(),
            size: input.size.clone(),
            command: StoredJson::of(command),
            parameters: parameters_of(command),
            // Only requests that opt into the cache are entries of it: the others
            // pay neither the hash nor the index entry.
            // Kept for a later `cache: true` request, and for a later stale fallback.
            cache_key: (command.cache || command.route.fallback_to_cache)
                .then(|| cache_key(command)),
            last_seq: 1,
            claim: None,
            batch: None,
        }
    }

    /// This task as item `index` of batch `batch_id`.
    #[must_use]
    pub fn in_batch(self, batch_id: &str, index: i64) -> Self {
        Self {
            batch: Some((batch_id.to_owned(), index)),
            ..self
        }
    }

    /// This task, created already claimed by `owner` until `until_ms` (Unix ms).
    #[must_use]
    pub fn claimed_by(self, owner: String, until_ms: i64) -> Self {
        Self {
            claim: Some((owner, until_ms)),
            ..self
        }
    }
}

impl NewTask {
    /// The task row for a command that did not parse or validate: what the envelope
    /// and subject say, with the raw body kept as the command.
    pub fn invalid(request_id: &RequestId, tenant: &Tenant, kind: &str, body: &[u8]) -> Self {
        let command = std::str::from_utf8(body)
            .ok()
            // A `\u0000` escape would make the stored JSON hold a NUL, which
            // PostgreSQL refuses: such a body is kept as text (under `raw`) instead.
            .filter(|text| !text.contains("\\u0000"))
            .and_then(|text| RawValue::from_string(text.to_owned()).ok())
            .map(StoredJson)
            .unwrap_or_else(|| {
                StoredJson::of(&serde_json::json!({"raw": String::from_utf8_lossy(body)}))
            });
        Self {
            request_id: request_id.clone(),
            tenant: tenant.clone(),
            user: None,
            kind: kind.to_owned(),
            prompt: None,
            input_images: None,
            model: None,
            size: None,
            command,
            parameters: Vec::new(),
            cache_key: None,
            last_seq: 0,
            claim: None,
            batch: None,
        }
    }
}

impl NewTask {
    /// The command field whose value the database refused, when it named the index
    /// that refused it (PostgreSQL does for an index entry too large, 54000): the
    /// btree indexes on `tasks.model` (`route.model`) and on the parameter names
    /// (`params`' keys) cap an entry at about 2.7 kB.
    pub fn refused_field(refusal: &crate::Refusal) -> Option<&'static str> {
        match refusal.constraint.as_deref()? {
            "tasks_model_idx" => Some("route.model"),
            "task_parameters_task_id_name_key" => Some("params"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(json: Value) -> Command {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn cache_keys_match_identical_requests_only() {
        let base = serde_json::json!({"request_id": "r1", "tenant": "acme", "kind": "image.generate",
            "input": {"prompt": "a fox", "seed": 7}, "params": {"a": 1, "b": {"x": 1, "y": 2}}});
        let key = cache_key(&command(base.clone()));
        // Another request id, user or reply_to, and another key order: the same request.
        let same: Value = serde_json::from_str(
            r#"{"params": {"b": {"y": 2, "x": 1}, "a": 1}, "tenant": "acme", "user": "u",
                "request_id": "r2", "reply_to": "_INBOX.x", "kind": "image.generate",
                "input": {"seed": 7, "prompt": "a fox"}}"#,
        )
        .unwrap();
        assert_eq!(cache_key(&command(same)), key);
        // Streamed or not, metadata or not: the same request.
        let mut streamed = base.clone();
        streamed["input"]["stream"] = serde_json::json!(true);
        streamed["metadata"] = serde_json::json!({"trace": "t-1"});
        assert_eq!(cache_key(&command(streamed)), key);
        for (path, value) in [
            ("tenant", serde_json::json!("other")),
            ("input", serde_json::json!({"prompt": "a fox", "seed": 8})),
            ("route", serde_json::json!({"model": "sdxl"})),
            ("params", serde_json::json!({"a": 2})),
        ] {
            let mut other = base.clone();
            other[path] = value;
            assert_ne!(cache_key(&command(other)), key, "{path}");
        }
    }
}
