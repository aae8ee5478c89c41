//! Prompt templates (issue 18 §2): a command may name a stored template with
//! variables (`input.template: {name, variables}`). It is rendered where the command
//! enters the pipeline, before its task row is written, so the rendered text is what
//! the task stores and what providers receive:
//! - for image kinds it becomes `input.prompt`;
//! - for `text.generate` it becomes `input.system`.
//!
//! The request's own `prompt` and `system` are variables of the template too.
//!
//! Rendering uses minijinja in a sandbox: no loader (no `include`, `import` or
//! `extends`, so no file access), no network, strict undefined variables, a fuel limit
//! on the instructions one render may run, and bounded template and output sizes.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use minijinja::{Environment, UndefinedBehavior};
use switchyard_core::{Command, Kind};

use crate::store::{PromptTemplate, QueryError, Store};

/// How long a template read from the database is used before it is read again.
const FRESH: Duration = Duration::from_secs(2);
/// The longest template text, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 16 * 1024;
/// The longest rendered text, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 32 * 1024;
/// The instructions one render may run.
const FUEL: u64 = 100_000;
/// Bounds on a request's variables, so that a tenant cannot make an innocent template
/// build huge strings (`'-' * width`, `text | indent(width)`): at most this many
/// variables, numbers within this magnitude, strings of at most this many bytes.
const MAX_VARIABLES: usize = 32;
const MAX_NUMBER: f64 = 1_000.0;
const MAX_STRING_BYTES: usize = 4 * 1024;
/// Names in the cache before misses are no longer kept.
const MAX_CACHED: usize = 10_000;

/// Why a template could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The request or the template is wrong; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// The database failed (the request may be tried again).
    #[error(transparent)]
    Database(#[from] QueryError),
}

/// The sandboxed environment every template is compiled and rendered in.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // A missing variable is an error where it is printed; `{% if x %}` and
    // `x | default(…)` still work for optional ones.
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_fuel(Some(FUEL));
    env
}

/// Whether `name` may name a template: 1 to 100 letters, digits, `-`, `_` or `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks a request's variables against the bounds above.
fn check_variables(variables: &serde_json::Map<String, serde_json::Value>) -> Result<(), String> {
    use serde_json::Value;
    if variables.len() > MAX_VARIABLES {
        return Err(format!("input.template.variables: at most {MAX_VARIABLES}"));
    }
    fn fits(value: &Value, depth: usize) -> bool {
        match value {
            Value::Null | Value::Bool(_) => true,
            Value::Number(n) => n.as_f64().is_some_and(|n| n.abs() <= MAX_NUMBER),
            Value::String(s) => s.len() <= MAX_STRING_BYTES,
            Value::Array(items) => {
                depth < 4
                    && items.len() <= MAX_VARIABLES
                    && items.iter().all(|v| fits(v, depth + 1))
            }
            Value::Object(map) => {
                depth < 4 && map.len() <= MAX_VARIABLES && map.values().all(|v| fits(v, depth + 1))
            }
        }
    }
    match variables.iter().find(|(_, v)| !fits(v, 0)) {
        Some((name, _)) => Err(format!(
            "input.template.variables.{}: numbers within ±{MAX_NUMBER}, strings of at most \
             {MAX_STRING_BYTES} bytes, at most {MAX_VARIABLES} items, nested at most 4 deep",
            name.chars().take(100).collect::<String>()
        )),
        None => Ok(()),
    }
}

/// A writer that refuses to grow past [`MAX_OUTPUT_BYTES`], so a render stops there
/// instead of building the whole string first.
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_OUTPUT_BYTES {
            return Err(std::io::Error::other("output too long"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The kinds a template is for: `text` or `image`.
pub fn kind_matches(template_kind: &str, kind: Kind) -> bool {
    match template_kind {
        "text" => kind == Kind::TextGenerate,
        "image" => matches!(kind, Kind::ImageGenerate | Kind::ImageEdit),
        _ => false,
    }
}

/// Checks a template before it is stored: its kind, its size, and that it compiles.
///
/// # Errors
/// What is wrong, naming the field.
pub fn check(kind: &str, text: &str) -> Result<(), String> {
    if !matches!(kind, "text" | "image") {
        return Err("kind: must be text or image".to_owned());
    }
    if text.trim().is_empty() {
        return Err("template: must not be empty".to_owned());
    }
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(format!("template: at most {MAX_TEMPLATE_BYTES} bytes"));
    }
    if text.contains('\0') {
        return Err("template: must not hold NUL characters".to_owned());
    }
    let env = environment();
    env.template_from_str(text)
        .map(|_| ())
        .map_err(|e| format!("template: {e}"))
}

/// A template as read (or its absence), and when.
type Cached = (Instant, Option<Arc<PromptTemplate>>);

/// The templates of this process: read from the database, kept for [`FRESH`].
#[derive(Debug, Clone)]
pub struct Templates {
    store: Store,
    cache: Arc<Mutex<HashMap<String, Cached>>>,
}

impl Templates {
    /// Templates over `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: Arc::default(),
        }
    }

    /// Forgets what is cached of `name` (it changed in this process).
    pub fn forget(&self, name: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(name);
        }
    }

    async fn lookup(&self, name: &str) -> Result<Option<Arc<PromptTemplate>>, QueryError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((read, template)) = cache.get(name)
            && read.elapsed() < FRESH
        {
            return Ok(template.clone());
        }
        let template = self.store.template(name).await?.map(Arc::new);
        if let Ok(mut cache) = self.cache.lock() {
            // Bounded: stale entries go first; when it is still full, only templates
            // that exist are kept (names asked for that do not exist are not).
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, (read, _)| read.elapsed() < FRESH);
            }
            if cache.len() < MAX_CACHED || template.is_some() {
                cache.insert(name.to_owned(), (Instant::now(), template.clone()));
            }
        }
        Ok(template)
    }

    /// Renders `command`'s template, if it names one, into its prompt (image kinds)
    /// or system prompt (text).
    ///
    /// # Errors
    /// [`TemplateError::Invalid`] naming the field (an unknown or disabled template,
    /// one for other kinds, missing variables, a render that fails or runs too long),
    /// or [`TemplateError::Database`].
    pub async fn render(&self, command: &mut Command) -> Result<(), TemplateError> {
        let Some(asked) = command.input.template.clone() else {
            return Ok(());
        };
        if !valid_name(&asked.name) {
            return Err(TemplateError::Invalid(
                "input.template.name: 1 to 100 letters, digits, '-', '_' or '.'".to_owned(),
            ));
        }
        let name = asked.name.clone();
        check_variables(&asked.variables).map_err(TemplateError::Invalid)?;
        let template = self
            .lookup(&name)
            .await?
            .filter(|t| t.enabled)
            .ok_or_else(|| {
                TemplateError::Invalid(format!("input.template.name: no template '{name}'"))
            })?;
        if !kind_matches(&template.kind, command.kind) {
            return Err(TemplateError::Invalid(format!(
                "input.template.name: template '{name}' is for {} requests, not {}",
                template.kind, command.kind
            )));
        }
        let mut variables = asked.variables.clone();
        let own = match command.kind {
            Kind::TextGenerate => ("system", command.input.system.clone()),
            Kind::ImageGenerate | Kind::ImageEdit => ("prompt", command.input.prompt.clone()),
        };
        if let (key, Some(value)) = own {
            variables
                .entry(key.to_owned())
                .or_insert(serde_json::Value::String(value));
        }
        // Off the async workers: a render is bounded, but may take its fuel's worth.
        let rendered =
            tokio::task::spawn_blocking(move || render_text(&name, &template.template, &variables))
                .await
                .map_err(|_| {
                    TemplateError::Invalid("input.template: the render failed".to_owned())
                })??;
        match command.kind {
            Kind::TextGenerate => command.input.system = Some(rendered),
            Kind::ImageGenerate | Kind::ImageEdit => command.input.prompt = Some(rendered),
        }
        // Rendered once: the stored and queued command carries the text, and the
        // template's name only as metadata (a job queued on the bus is not rendered
        // again at intake).
        command.input.template = None;
        command
            .metadata
            .get_or_insert_with(Default::default)
            .insert("template".to_owned(), serde_json::Value::String(asked.name));
        let size = serde_json::to_vec(&*command).map_or(usize::MAX, |b| b.len());
        if size > switchyard_core::protocol::MAX_COMMAND_BYTES {
            return Err(TemplateError::Invalid(format!(
                "input.template: the rendered command is {size} bytes, over the {} limit",
                switchyard_core::protocol::MAX_COMMAND_BYTES
            )));
        }
        Ok(())
    }
}

/// Renders `text` (template `name`) with `variables`, within the output bound.
fn render_text(
    name: &str,
    text: &str,
    variables: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, TemplateError> {
    let env = environment();
    let compiled = env.template_from_str(text).map_err(|e| {
        TemplateError::Invalid(format!("input.template.name: template '{name}': {e}"))
    })?;
    let mut out = Bounded(Vec::new());
    if let Err(e) = compiled.render_captured_to(variables, &mut out) {
        if e.kind() == minijinja::ErrorKind::UndefinedError {
            // The error does not say which: name those the template uses that the
            // request did not give (globals such as `range` are not variables).
            let globals: Vec<&str> = env.globals().map(|(g, _)| g).collect();
            let mut missing: Vec<String> = compiled
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !variables.contains_key(v) && !globals.contains(&v.as_str()))
                .collect();
            if !missing.is_empty() {
                missing.sort();
                let names: Vec<String> = missing.iter().map(|v| format!("'{v}'")).collect();
                return Err(TemplateError::Invalid(format!(
                    "input.template.variables: missing {}",
                    names.join(", ")
                )));
            }
        }
        if e.kind() == minijinja::ErrorKind::WriteFailure {
            return Err(TemplateError::Invalid(format!(
                "input.template: '{name}' renders more than {MAX_OUTPUT_BYTES} bytes"
            )));
        }
        return Err(TemplateError::Invalid(format!(
            "input.template: cannot render '{name}': {e}"
        )));
    }
    String::from_utf8(out.0)
        .map_err(|_| TemplateError::Invalid(format!("input.template: '{name}' is not UTF-8")))
}

/// Whether a raw command body may name a template: a body without the word takes the
/// fast path. (A command whose key is escaped is parsed and checked there: one that
/// passes is rendered after all; one that needs its template to pass is refused.)
pub(crate) fn may_name_a_template(body: &[u8]) -> bool {
    body.windows(10).any(|w| w == b"\"template\"")
}

impl Templates {
    /// Parses and checks a raw command, rendering its template first if it names one
    /// (so that the rendered prompt is what the rules check).
    ///
    /// # Errors
    /// [`TemplateError::Invalid`] with the message of the first problem, or
    /// [`TemplateError::Database`].
    pub async fn parse_command(
        &self,
        body: &[u8],
        subject_kind: Option<Kind>,
    ) -> Result<Command, TemplateError> {
        let invalid = |e: switchyard_core::CommandError| TemplateError::Invalid(e.to_string());
        if !may_name_a_template(body) {
            let command = Command::parse_and_validate(body, subject_kind).map_err(invalid)?;
            if command.input.template.is_none() {
                return Ok(command);
            }
        }
        let mut command = Command::parse(body).map_err(invalid)?;
        self.render(&mut command).await?;
        command
            .validate(subject_kind)
            .map_err(|e| TemplateError::Invalid(e.to_string()))?;
        Ok(command)
    }
}
