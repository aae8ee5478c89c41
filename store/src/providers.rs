//! Provider configs in the database. Rows are read back as drafts and validated, so a
//! row edited by hand into something invalid is reported, not trusted.
//!
//! This file holds the record, its JSON view, the list filter and the errors; the
//! queries are in `queries`, the change notices (fingerprint and PostgreSQL listener)
//! in `changes`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use switchyard_core::{
    ConfigId, FieldError, Kind, ProviderConfig, ProviderConfigDraft, ProviderType, ValidationError,
};

use crate::secrets::SecretError;

mod changes;
mod queries;
mod stored_auth;

pub use changes::{ConfigChange, ConfigListener};

/// Why a provider config read ([`Store::get_provider`](crate::Store::get_provider),
/// [`Store::find_provider`](crate::Store::find_provider),
/// [`Store::list_providers`](crate::Store::list_providers)) failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigReadError {
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored API key could not be decrypted.
    #[error("provider config {id}: {source}")]
    Secret {
        /// The config whose key failed.
        id: ConfigId,
        /// Why.
        #[source]
        source: SecretError,
    },
}

/// Why a provider config write ([`Store::insert_provider`](crate::Store::insert_provider),
/// [`Store::update_provider`](crate::Store::update_provider),
/// [`Store::patch_provider`](crate::Store::patch_provider),
/// [`Store::delete_provider`](crate::Store::delete_provider),
/// [`Store::seed_providers`](crate::Store::seed_providers)) failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigWriteError {
    /// The config does not validate.
    #[error("invalid provider config: {0}")]
    Invalid(#[from] ValidationError),
    /// Another provider config already has this name.
    #[error("a provider config named '{0}' already exists")]
    NameTaken(String),
    /// No provider config with this id.
    #[error("provider config {0} not found")]
    NotFound(ConfigId),
    /// The config changed since it was read (optimistic concurrency).
    #[error("provider config {id} is at version {actual}, not {expected}")]
    VersionConflict {
        /// The config.
        id: ConfigId,
        /// The version the caller read.
        expected: i64,
        /// The version in the database.
        actual: i64,
    },
    /// The stored config's API key could not be decrypted (read before the write).
    #[error("provider config {id}: {source}")]
    Secret {
        /// The config whose key failed.
        id: ConfigId,
        /// Why.
        #[source]
        source: SecretError,
    },
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<ConfigReadError> for ConfigWriteError {
    fn from(e: ConfigReadError) -> Self {
        match e {
            ConfigReadError::Database(e) => Self::Database(e),
            ConfigReadError::Secret { id, source } => Self::Secret { id, source },
        }
    }
}

/// A provider config row as stored: the draft it holds plus server fields. It may not
/// validate (rows can be edited by hand); [`ProviderRecord::config`] says.
#[derive(Debug, Clone)]
pub struct ProviderRecord {
    /// Database id.
    pub id: ConfigId,
    /// Bumped on every write.
    pub version: i64,
    /// When the row was made.
    pub created_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
    /// The stored settings, with the API key decrypted.
    pub draft: ProviderConfigDraft,
    /// Columns that could not be read into the draft at all.
    pub problems: Vec<FieldError>,
}

impl ProviderRecord {
    /// The validated config.
    ///
    /// # Errors
    /// [`ValidationError`] when the row is not a valid config.
    pub fn config(&self) -> Result<ProviderConfig, ValidationError> {
        let spec = self.draft.validate();
        match (spec, self.problems.is_empty()) {
            (Ok(spec), true) => Ok(ProviderConfig {
                id: self.id,
                spec,
                version: self.version,
                created_at: self.created_at,
                updated_at: self.updated_at,
            }),
            (Ok(_), false) => Err(ValidationError {
                errors: self.problems.clone(),
            }),
            (Err(mut e), _) => {
                e.errors.splice(0..0, self.problems.iter().cloned());
                Err(e)
            }
        }
    }

    /// The PROTOCOL.md §6 object (key masked); an invalid row shows its stored fields
    /// and an `errors` list instead.
    pub fn to_json(&self) -> Value {
        match self.config() {
            Ok(config) => serde_json::to_value(&config).unwrap_or(Value::Null),
            Err(e) => {
                let mut map = match serde_json::to_value(&self.draft) {
                    Ok(Value::Object(map)) => map,
                    _ => Map::new(),
                };
                map.insert("id".into(), Value::from(self.id.0));
                map.insert("version".into(), Value::from(self.version));
                map.insert(
                    "errors".into(),
                    serde_json::to_value(&e.errors).unwrap_or(Value::Null),
                );
                Value::Object(map)
            }
        }
    }

    /// The name, even for an invalid row.
    pub fn name(&self) -> &str {
        self.draft.name.as_deref().unwrap_or("")
    }
}

/// Which configs [`Store::list_providers`](crate::Store::list_providers) returns.
#[derive(Debug, Clone, Default)]
pub struct ProviderFilter {
    /// Only this provider type.
    pub provider: Option<ProviderType>,
    /// Only enabled (true) or disabled (false) configs.
    pub enabled: Option<bool>,
    /// Only configs serving this kind.
    pub kind: Option<Kind>,
    /// Only the own accounts of this tenant.
    pub owner: Option<String>,
    /// Skip this many.
    pub offset: usize,
    /// Return at most this many.
    pub limit: Option<usize>,
}

impl ProviderFilter {
    fn matches(&self, record: &ProviderRecord) -> bool {
        let draft = &record.draft;
        if let Some(provider) = self.provider
            && draft.provider.as_deref() != Some(provider.as_str())
        {
            return false;
        }
        if let Some(enabled) = self.enabled
            && draft.enabled != Some(enabled)
        {
            return false;
        }
        if let Some(owner) = &self.owner
            && draft.owner.as_ref() != Some(owner)
        {
            return false;
        }
        if let Some(kind) = self.kind {
            return match &draft.kinds {
                Some(kinds) => kinds.iter().any(|k| k == kind.as_str()),
                None => false,
            };
        }
        true
    }
}
