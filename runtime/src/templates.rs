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
            // Bounded: names requests ask for that do not exist are kept only briefly.
            if cache.len() > 10_000 {
                cache.retain(|_, (read, _)| read.elapsed() < FRESH);
            }
            cache.insert(name.to_owned(), (Instant::now(), template.clone()));
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
        let name: String = asked.name.chars().take(100).collect();
        let template = self
            .lookup(&asked.name)
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
        let env = environment();
        let compiled = env.template_from_str(&template.template).map_err(|e| {
            TemplateError::Invalid(format!("input.template.name: template '{name}': {e}"))
        })?;
        let rendered = compiled.render(&variables).map_err(|e| {
            if e.kind() == minijinja::ErrorKind::UndefinedError {
                // The error does not say which: name those the template uses and the
                // request did not give.
                let mut missing: Vec<String> = compiled
                    .undeclared_variables(false)
                    .into_iter()
                    .filter(|v| !variables.contains_key(v))
                    .collect();
                if !missing.is_empty() {
                    missing.sort();
                    let names: Vec<String> = missing.iter().map(|v| format!("'{v}'")).collect();
                    return TemplateError::Invalid(format!(
                        "input.template.variables: missing {}",
                        names.join(", ")
                    ));
                }
            }
            TemplateError::Invalid(format!("input.template: cannot render '{name}': {e}"))
        })?;
        if rendered.len() > MAX_OUTPUT_BYTES {
            return Err(TemplateError::Invalid(format!(
                "input.template: '{name}' rendered more than {MAX_OUTPUT_BYTES} bytes"
            )));
        }
        match command.kind {
            Kind::TextGenerate => command.input.system = Some(rendered),
            Kind::ImageGenerate | Kind::ImageEdit => command.input.prompt = Some(rendered),
        }
        Ok(())
    }
}

/// Whether a raw command body may name a template (a cheap look: a body without the
/// word takes the fast path, and a parsed command that names one all the same, its
/// key escaped, is rendered then).
fn may_name_a_template(body: &[u8]) -> bool {
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
