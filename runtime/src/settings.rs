//! Process settings (PROTOCOL.md §7): `config/switchyard.toml` (or `--config FILE`),
//! overridden by `SWITCHYARD_<SECTION>__<KEY>` env vars. Unknown keys and bad values
//! fail at start with a message naming the key. Settings are fixed for the process
//! lifetime; provider configs live in the database and hot-reload.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use serde::Deserialize;
use switchyard_core::{FieldError, ProviderConfigDraft, ValidationError, redact_url};

mod batches;
mod cache;
mod http;
mod outbound;
mod retention;
mod tenants;
mod webhooks;

pub use batches::BatchSettings;
pub use cache::CacheSettings;
pub use http::HttpSettings;
pub use outbound::OutboundSettings;
pub use retention::RetentionSettings;
pub use tenants::{OverLimit, TenantSettings};
pub use webhooks::WebhookSettings;

/// The default config file, relative to the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "config/switchyard.toml";

/// All process settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `[database]`.
    #[serde(default)]
    pub database: DatabaseSettings,
    /// `[bus]`.
    #[serde(default)]
    pub bus: BusSettings,
    /// `[http]`.
    #[serde(default)]
    pub http: HttpSettings,
    /// `[artifacts]`.
    #[serde(default)]
    pub artifacts: ArtifactSettings,
    /// `[secrets]`.
    #[serde(default)]
    pub secrets: SecretSettings,
    /// `[admin]`.
    #[serde(default)]
    pub admin: AdminSettings,
    /// `[plugins]`.
    #[serde(default)]
    pub plugins: PluginSettings,
    /// `[outbound]`.
    #[serde(default)]
    pub outbound: OutboundSettings,
    /// `[tenants]`.
    #[serde(default)]
    pub tenants: TenantSettings,
    /// `[retention]`.
    #[serde(default)]
    pub retention: RetentionSettings,
    /// `[webhooks]`.
    #[serde(default)]
    pub webhooks: WebhookSettings,
    /// `[cache]`.
    #[serde(default)]
    pub cache: CacheSettings,
    /// `[batches]`.
    #[serde(default)]
    pub batches: BatchSettings,
    /// `[[providers]]`: seeds for the database, applied once per name.
    #[serde(default)]
    pub providers: Vec<ProviderConfigDraft>,
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://path` (embedded default) or `postgres://…`.
    pub url: String,
    /// PostgreSQL only: the schema to use (created if missing); default `public`.
    pub schema: Option<String>,
    /// Pool size.
    pub max_connections: u32,
    /// How often to poll for provider config changes made outside the API (SQLite has
    /// no NOTIFY; on PostgreSQL it is a backstop), in ms.
    pub change_poll_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/switchyard.db".to_owned(),
            schema: None,
            max_connections: 10,
            change_poll_ms: 2_000,
        }
    }
}

/// `[bus]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusSettings {
    /// `memory://` (in-process) or `nats://host:port[,nats://…]`.
    pub url: String,
    /// Subject prefix; stream names derive from it.
    pub prefix: String,
    /// Name of the durable pull consumer all runtime processes share.
    pub consumer: String,
    /// A delivered command not acked (nor marked in progress) within this many ms is
    /// delivered again, to any process.
    pub ack_wait_ms: u64,
    /// Deliveries of one command at most.
    pub max_deliver: i64,
    /// How long the event stream keeps events, in ms.
    pub event_max_age_ms: u64,
    /// Commands handled at once per process.
    pub concurrency: usize,
    /// Commands a process pulls ahead of those it runs, ordered by priority: an urgent
    /// command behind this many starts at the next free slot.
    pub intake_window: usize,
    /// The most bytes of commands pulled ahead.
    pub intake_window_bytes: usize,
    /// Subjects a command's `reply_to` may name besides `_INBOX.…` (NATS filters with
    /// `*` and `>`); never the gateway's own prefix or `$…` (PROTOCOL.md §2).
    pub reply_to_allow: Vec<String>,
    /// NATS auth token.
    pub token: Option<Secret>,
    /// NATS user name (with `password`).
    pub user: Option<String>,
    /// NATS password.
    pub password: Option<Secret>,
    /// NATS `.creds` file.
    pub credentials_file: Option<PathBuf>,
    /// NATS nkey seed.
    pub nkey: Option<Secret>,
    /// Require TLS to NATS.
    pub tls: bool,
    /// PEM file of the CA(s) that sign the NATS servers' certificates (a private CA);
    /// the system roots otherwise. Implies `tls`.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for servers that verify clients (mutual TLS).
    pub tls_client_cert: Option<PathBuf>,
    /// The client certificate's key.
    pub tls_client_key: Option<PathBuf>,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            url: "memory://".to_owned(),
            prefix: "switchyard".to_owned(),
            consumer: "switchyard-runtime".to_owned(),
            ack_wait_ms: 30_000,
            max_deliver: 20,
            event_max_age_ms: 24 * 3600 * 1000,
            concurrency: 256,
            intake_window: 8192,
            intake_window_bytes: 64 << 20,
            reply_to_allow: Vec::new(),
            token: None,
            user: None,
            password: None,
            credentials_file: None,
            nkey: None,
            tls: false,
            tls_ca_file: None,
            tls_client_cert: None,
            tls_client_key: None,
        }
    }
}

impl BusSettings {
    /// The NATS options these settings describe.
    pub fn nats_options(&self) -> crate::bus::NatsOptions {
        crate::bus::NatsOptions {
            consumer: self.consumer.clone(),
            event_max_age: std::time::Duration::from_millis(self.event_max_age_ms),
            ack_wait: std::time::Duration::from_millis(self.ack_wait_ms),
            max_deliver: self.max_deliver,
            max_ack_pending: i64::try_from(self.concurrency.max(1) * 4 + self.intake_window)
                .unwrap_or(i64::MAX),
            token: self.token.as_ref().map(|t| t.expose().to_owned()),
            user_password: match (&self.user, &self.password) {
                (Some(user), Some(password)) => Some((user.clone(), password.expose().to_owned())),
                _ => None,
            },
            credentials_file: self.credentials_file.clone(),
            nkey: self.nkey.as_ref().map(|k| k.expose().to_owned()),
            tls: self.tls || self.tls_ca_file.is_some(),
            tls_ca_file: self.tls_ca_file.clone(),
            tls_client: self
                .tls_client_cert
                .clone()
                .zip(self.tls_client_key.clone()),
        }
    }
}

/// `[artifacts]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArtifactSettings {
    /// Where images are stored: `file://dir`, `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix` or `memory://`.
    pub url: String,
    /// How long a signed artifact URL in an event stays valid, in ms.
    pub url_ttl_ms: u64,
    /// The key artifact URLs are signed with (≥ 16 characters); wins over the file.
    /// Every replica needs the same one.
    pub url_key: Option<Secret>,
    /// File holding that key; generated (0600) when missing.
    pub url_key_file: PathBuf,
    /// Put the store's own presigned GET URLs in events instead of the gateway's links,
    /// where the store signs them (S3); clients then fetch images from the store.
    pub presign: bool,
}

impl Default for ArtifactSettings {
    fn default() -> Self {
        Self {
            url: "file://data/artifacts".to_owned(),
            url_ttl_ms: 24 * 3600 * 1000,
            url_key: None,
            url_key_file: PathBuf::from("data/artifact-url.key"),
            presign: false,
        }
    }
}

/// `[plugins]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    /// Run the WASM plugin host (`wasm` provider configs need it).
    pub enabled: bool,
    /// Where compiled plugins are cached, so restarts do not recompile ("" = none).
    pub cache_dir: String,
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            cache_dir: "data/plugin-cache".to_owned(),
        }
    }
}

/// `[secrets]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretSettings {
    /// The master key itself (base64 of 32 bytes); wins over the file.
    pub master_key: Option<Secret>,
    /// File holding the master key (base64); generated (0600) when missing on a fresh
    /// database.
    pub master_key_file: PathBuf,
}

impl Default for SecretSettings {
    fn default() -> Self {
        Self {
            master_key: None,
            master_key_file: PathBuf::from("data/master.key"),
        }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Bearer token of the admin API; wins over the file.
    pub token: Option<Secret>,
    /// File holding the admin token; generated (0600) and printed at first start.
    pub token_file: PathBuf,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            token: None,
            token_file: PathBuf::from("data/admin.token"),
        }
    }
}

/// A secret setting: never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plaintext.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file or env could not be read or did not fit the settings' shape.
    #[error("{0}")]
    Load(#[from] Box<figment::Error>),
    /// The config file named with `--config` does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// Values have the right shape but are not acceptable.
    #[error("invalid settings: {0}")]
    Invalid(ValidationError),
}

impl Settings {
    /// Loads `file` (or [`DEFAULT_CONFIG_FILE`] if it exists), then `SWITCHYARD_*` env,
    /// and validates the result.
    ///
    /// # Errors
    /// [`SettingsError`] naming the bad key.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let mut figment = Figment::new();
        match file {
            Some(path) if !path.exists() => {
                return Err(SettingsError::MissingFile(path.to_owned()));
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        let settings = Self::extract(figment.merge(env_provider()))?;
        settings.validate().map_err(SettingsError::Invalid)?;
        Ok(settings)
    }

    /// Parses settings from TOML text alone (no env), and validates them.
    ///
    /// # Errors
    /// [`SettingsError`] naming the bad key.
    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        let settings = Self::extract(Figment::new().merge(Toml::string(text)))?;
        settings.validate().map_err(SettingsError::Invalid)?;
        Ok(settings)
    }

    fn extract(figment: Figment) -> Result<Self, SettingsError> {
        figment
            .extract()
            .map_err(|e| SettingsError::Load(Box::new(e)))
    }

    /// Checks values that have the right type but are unusable, collecting every
    /// problem (including each `[[providers]]` entry's field errors).
    ///
    /// # Errors
    /// [`ValidationError`] with one entry per bad key.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = Vec::new();
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            errors.push(FieldError::new(
                "database.url",
                format!(
                    "must start with sqlite:, postgres:// or postgresql://, got '{}'",
                    redact_url(url)
                ),
            ));
        }
        if let Some(schema) = &self.database.schema
            && (schema.is_empty()
                || !schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            errors.push(FieldError::new(
                "database.schema",
                "may only contain A-Z, a-z, 0-9 and '_'",
            ));
        }
        if self.database.change_poll_ms < 50 {
            errors.push(FieldError::new(
                "database.change_poll_ms",
                "must be at least 50",
            ));
        }
        if self.database.max_connections == 0 {
            errors.push(FieldError::new("database.max_connections", "must be > 0"));
        }
        let bus = &self.bus.url;
        if bus != "memory://"
            && !bus
                .split(',')
                .all(|u| u.trim().starts_with("nats://") || u.trim().starts_with("tls://"))
        {
            errors.push(FieldError::new(
                "bus.url",
                format!(
                    "must be memory:// or a comma-separated list of nats:// URLs, got '{}'",
                    redact_url(bus)
                ),
            ));
        }
        if self.bus.ack_wait_ms < 1_000 {
            errors.push(FieldError::new("bus.ack_wait_ms", "must be at least 1000"));
        }
        if self.bus.max_deliver < 1 {
            errors.push(FieldError::new("bus.max_deliver", "must be > 0"));
        }
        if self.bus.intake_window == 0 || self.bus.intake_window_bytes == 0 {
            errors.push(FieldError::new(
                "bus.intake_window",
                "bus.intake_window and bus.intake_window_bytes must be > 0",
            ));
        }
        if self.bus.concurrency == 0 {
            errors.push(FieldError::new("bus.concurrency", "must be > 0"));
        }
        if self.bus.user.is_some() != self.bus.password.is_some() {
            errors.push(FieldError::new(
                "bus.user",
                "and bus.password must be given together",
            ));
        }
        if self.bus.consumer.is_empty()
            || !self
                .bus
                .consumer
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        {
            errors.push(FieldError::new(
                "bus.consumer",
                "may only contain A-Z, a-z, 0-9, '_' and '-'",
            ));
        }
        let prefix = &self.bus.prefix;
        if prefix.is_empty()
            || prefix.starts_with('.')
            || prefix.ends_with('.')
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            errors.push(FieldError::new(
                "bus.prefix",
                format!(
                    "'{prefix}' is not a valid subject prefix (A-Z, a-z, 0-9, '_', '-', inner '.')"
                ),
            ));
        }
        self.http.check(&mut errors);
        if ![
            "file://",
            "s3://",
            "gs://",
            "az://",
            "azure://",
            "abfs://",
            "abfss://",
            "memory://",
        ]
        .iter()
        .any(|scheme| self.artifacts.url.starts_with(scheme))
        {
            errors.push(FieldError::new(
                "artifacts.url",
                format!(
                    "must be a file://, s3://, gs://, az:// or memory:// URL, got '{}'",
                    self.artifacts.url
                ),
            ));
        }
        if let Some(key) = &self.secrets.master_key
            && let Err(e) = crate::secrets::MasterKey::from_base64(key.expose())
        {
            errors.push(FieldError::new("secrets.master_key", e.to_string()));
        }
        if self
            .admin
            .token
            .as_ref()
            .is_some_and(|t| t.expose().len() < 16)
        {
            errors.push(FieldError::new(
                "admin.token",
                "must be at least 16 characters",
            ));
        }
        self.outbound.check(&mut errors);
        self.tenants.check(&mut errors);
        self.retention.check(&mut errors);
        self.cache.check(&mut errors);
        self.batches.check(&mut errors);
        self.webhooks.check(&mut errors);
        if self.artifacts.url_ttl_ms == 0 {
            errors.push(FieldError::new("artifacts.url_ttl_ms", "must be > 0"));
        }
        if self
            .artifacts
            .url_key
            .as_ref()
            .is_some_and(|k| k.expose().len() < 16)
        {
            errors.push(FieldError::new(
                "artifacts.url_key",
                "must be at least 16 characters",
            ));
        }
        for (i, filter) in self.bus.reply_to_allow.iter().enumerate() {
            let tokens_ok = !filter.is_empty()
                && filter.split('.').all(|t| {
                    !t.is_empty()
                        && t.chars().all(|c| c.is_ascii_graphic())
                        && (t.len() == 1 || !t.contains(['*', '>']))
                });
            let under_own = filter == prefix || filter.starts_with(&format!("{prefix}."));
            if !tokens_ok
                || filter.starts_with('$')
                || under_own
                || filter.starts_with('>')
                || filter.starts_with('*')
            {
                errors.push(FieldError::new(
                    format!("bus.reply_to_allow[{i}]"),
                    format!(
                        "'{filter}' is not a subject filter outside the gateway's own prefix and $…"
                    ),
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, draft) in self.providers.iter().enumerate() {
            if let Err(e) = draft.validate() {
                errors.extend(
                    e.errors
                        .into_iter()
                        .map(|f| FieldError::new(format!("providers[{i}].{}", f.path), f.message)),
                );
            }
            if let Some(name) = &draft.name
                && !names.insert(name.clone())
            {
                errors.push(FieldError::new(
                    format!("providers[{i}].name"),
                    format!("'{name}' is used by an earlier entry"),
                ));
            }
        }
        ValidationError::from_errors(errors)
    }
}

/// `SWITCHYARD_<SECTION>__<KEY>`; variables without `__` (such as `SWITCHYARD_CONFIG`)
/// are not settings and are left alone.
fn env_provider() -> Env {
    Env::prefixed("SWITCHYARD_")
        .filter(|key| key.as_str().contains("__"))
        .split("__")
}

#[cfg(test)]
mod tests;
