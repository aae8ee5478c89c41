//! A config's presets (`defaults`, issue 18 §3): values an instance fills in for the
//! fields a request leaves out, when that instance serves it. The request's own
//! values always win; `params` merge key by key (the request's keys win).
//!
//! Image kinds take `size`, `quality`, `style`, `n` and `negative_prompt`; text takes
//! `temperature`, `max_tokens` and `system`; both take `params`. Presets are checked
//! like the command's own fields when the config is saved.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::validate::FieldError;
use crate::protocol::Command;

/// The most `params` keys a preset holds.
const MAX_PARAMS: usize = 32;
/// The longest a preset's `params` may be, as JSON.
const MAX_PARAMS_BYTES: usize = 16 * 1024;
/// The longest a preset's `system` or `negative_prompt` may be.
const MAX_TEXT: usize = 16 * 1024;

/// A config's presets (module docs). Every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presets {
    /// Image size (`WxH` or a size token such as `2K`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Image quality, as the provider names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    /// Image style, as the provider names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    /// Images per request, 1–10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<i64>,
    /// What an image should not show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Sampling temperature, 0–2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Most tokens in a text answer, 1–1,000,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// The system prompt of a text request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Provider parameters (the gateway's own fields among them are dropped by the
    /// adapters, as a request's are).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
}

impl Presets {
    /// Whether there is nothing to fill in.
    pub fn is_empty(&self) -> bool {
        *self == Presets::default()
    }

    /// Checks every field, pushing one error per problem (paths under `defaults.`).
    pub(super) fn check(&self, errors: &mut Vec<FieldError>) {
        let mut bad = |path: &str, message: String| {
            errors.push(FieldError::new(format!("defaults.{path}"), message));
        };
        if let Some(size) = &self.size
            && !crate::protocol::is_valid_size(size)
        {
            bad(
                "size",
                format!("'{size}' is neither WxH (e.g. 1024x1024) nor a size token (e.g. 2K)"),
            );
        }
        for (path, value) in [("quality", &self.quality), ("style", &self.style)] {
            if let Some(value) = value
                && (value.trim().is_empty() || value.len() > 100)
            {
                bad(path, "must be 1–100 characters".to_owned());
            }
        }
        if let Some(n) = self.n
            && !(1..=10).contains(&n)
        {
            bad("n", format!("must be 1–10, got {n}"));
        }
        for (path, value) in [
            ("negative_prompt", &self.negative_prompt),
            ("system", &self.system),
        ] {
            if let Some(value) = value
                && (value.trim().is_empty() || value.len() > MAX_TEXT)
            {
                bad(path, format!("must be 1–{MAX_TEXT} bytes"));
            }
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            bad("temperature", format!("must be 0–2, got {t}"));
        }
        if let Some(max_tokens) = self.max_tokens
            && !(1..=1_000_000).contains(&max_tokens)
        {
            bad("max_tokens", format!("must be 1–1000000, got {max_tokens}"));
        }
        let params_len = serde_json::to_string(&self.params).map_or(usize::MAX, |s| s.len());
        if self.params.len() > MAX_PARAMS || params_len > MAX_PARAMS_BYTES {
            bad(
                "params",
                format!("at most {MAX_PARAMS} keys and {MAX_PARAMS_BYTES} bytes of JSON"),
            );
        }
        let text = [
            &self.negative_prompt,
            &self.system,
            &self.quality,
            &self.style,
        ];
        if text
            .iter()
            .any(|t| t.as_deref().is_some_and(|t| t.contains('\0')))
            || params_len != usize::MAX
                && crate::protocol::nul_in(&Value::Object(self.params.clone()))
        {
            bad(
                "",
                "holds a NUL character (\\u0000), which cannot be stored".to_owned(),
            );
        }
    }

    /// `command` with the fields it leaves out filled in from these presets, or `None`
    /// when none applies (the request gives them all, or there are none for its kind).
    pub fn apply(&self, command: &Command) -> Option<Command> {
        if self.is_empty() {
            return None;
        }
        let mut filled = command.clone();
        let input = &mut filled.input;
        let mut changed = false;
        let mut fill = |slot: &mut Option<String>, preset: &Option<String>| {
            if slot.is_none() && preset.is_some() {
                slot.clone_from(preset);
                changed = true;
            }
        };
        if command.kind.is_image() {
            fill(&mut input.size, &self.size);
            fill(&mut input.quality, &self.quality);
            fill(&mut input.style, &self.style);
            fill(&mut input.negative_prompt, &self.negative_prompt);
        } else {
            fill(&mut input.system, &self.system);
        }
        if command.kind.is_image() && input.n.is_none() && self.n.is_some() {
            input.n = self.n;
            changed = true;
        }
        if !command.kind.is_image() {
            if input.temperature.is_none() && self.temperature.is_some() {
                input.temperature = self.temperature;
                changed = true;
            }
            if input.max_tokens.is_none() && self.max_tokens.is_some() {
                input.max_tokens = self.max_tokens;
                changed = true;
            }
        }
        for (key, value) in &self.params {
            if !filled.params.contains_key(key) {
                filled.params.insert(key.clone(), value.clone());
                changed = true;
            }
        }
        changed.then_some(filled)
    }

    /// The images a request of an image kind asks for once these presets fill it in.
    pub fn images_for(&self, command: &Command) -> i64 {
        match (command.kind.is_image(), command.input.n, self.n) {
            (true, None, Some(n)) => n.max(1),
            _ => command.images_asked(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presets(json: Value) -> Presets {
        serde_json::from_value(json).unwrap()
    }

    fn command(json: Value) -> Command {
        serde_json::from_value(json).unwrap()
    }

    fn problems(presets: &Presets) -> Vec<String> {
        let mut errors = Vec::new();
        presets.check(&mut errors);
        errors.into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn presets_fill_only_what_the_request_leaves_out() {
        let p = presets(serde_json::json!({
            "size": "1792x1024", "quality": "hd", "n": 2, "negative_prompt": "blur",
            "temperature": 0.2, "max_tokens": 64, "system": "Be brief.",
            "params": {"seed": 7, "watermark": false}
        }));
        let image = command(serde_json::json!({"request_id": "r", "tenant": "t",
            "kind": "image.generate", "input": {"prompt": "a fox", "size": "1024x1024"},
            "params": {"seed": 1}}));
        let filled = p.apply(&image).unwrap();
        assert_eq!(
            filled.input.size.as_deref(),
            Some("1024x1024"),
            "the request wins"
        );
        assert_eq!(filled.input.quality.as_deref(), Some("hd"));
        assert_eq!(filled.input.n, Some(2));
        assert_eq!(filled.input.negative_prompt.as_deref(), Some("blur"));
        assert_eq!(
            filled.input.temperature, None,
            "text presets stay off images"
        );
        assert_eq!(filled.params["seed"], 1);
        assert_eq!(filled.params["watermark"], false);
        assert_eq!(p.images_for(&image), 2);

        let text = command(serde_json::json!({"request_id": "r", "tenant": "t",
            "kind": "text.generate", "input": {"messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 500}}));
        let filled = p.apply(&text).unwrap();
        assert_eq!(filled.input.system.as_deref(), Some("Be brief."));
        assert_eq!(filled.input.temperature, Some(0.2));
        assert_eq!(filled.input.max_tokens, Some(500));
        assert_eq!(filled.input.n, None);
        assert_eq!(p.images_for(&text), 0);

        assert!(Presets::default().apply(&text).is_none());
        let only_size = presets(serde_json::json!({"size": "2K"}));
        assert!(
            only_size.apply(&text).is_none(),
            "nothing of an image preset fits text"
        );
    }

    #[test]
    fn each_bad_preset_is_named() {
        let p = presets(serde_json::json!({
            "size": "huge one", "quality": "", "n": 11, "temperature": 3.0, "max_tokens": 0,
            "system": " ", "negative_prompt": "a\u{0}b"
        }));
        let paths = problems(&p);
        for path in [
            "defaults.size",
            "defaults.quality",
            "defaults.n",
            "defaults.temperature",
            "defaults.max_tokens",
            "defaults.system",
            "defaults.",
        ] {
            assert!(paths.iter().any(|p| p == path), "{path} in {paths:?}");
        }
        let many: Map<String, Value> = (0..40).map(|i| (format!("k{i}"), Value::from(i))).collect();
        let p = Presets {
            params: many,
            ..Presets::default()
        };
        assert_eq!(problems(&p), ["defaults.params"]);
        assert!(serde_json::from_value::<Presets>(serde_json::json!({"colour": 1})).is_err());
    }
}
