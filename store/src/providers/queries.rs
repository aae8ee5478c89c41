//! The provider config queries: insert, update, patch, delete and the reads, which
//! decrypt the API key and read each row back as a draft.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::types::Json;
use switchyard_core::{
    ApiKey, ConfigId, ConfigRef, FieldError, ProviderConfig, ProviderConfigDraft, ProviderSpec,
    RateLimitDraft,
};

use super::{
    ConfigReadError, ConfigWriteError, ProviderFilter, ProviderRecord, stored_auth::StoredAuth,
};
use crate::{Store, on_pool};

#[derive(sqlx::FromRow)]
struct ProviderRow {
    id: i64,
    name: String,
    provider: String,
    kinds: Json<Value>,
    model: Option<String>,
    base_url: Option<String>,
    api_key_ciphertext: Option<String>,
    enabled: bool,
    priority: i64,
    weight: i64,
    rpm: Option<i64>,
    burst: Option<i64>,
    max_concurrency: Option<i64>,
    tpm: Option<i64>,
    breaker: Option<Json<Value>>,
    timeout_ms: i64,
    cost: Option<Json<Value>>,
    supports_images: bool,
    supports_files: bool,
    supports_audio: bool,
    supports_video: bool,
    plugin: Option<String>,
    options: Json<Value>,
    description: Option<String>,
    owner: Option<String>,
    auth: Option<Json<Value>>,
    defaults: Option<Json<Value>>,
    fallback_models: Option<Json<Value>>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, provider, kinds, model, base_url, api_key_ciphertext, enabled, \
    priority, weight, rpm, burst, max_concurrency, tpm, breaker, timeout_ms, cost, \
    supports_images, supports_files, supports_audio, supports_video, plugin, options, \
    description, owner, auth, defaults, fallback_models, version, created_at, updated_at";

/// Values of one spec, ready to bind in column order.
struct SpecColumns {
    name: String,
    provider: &'static str,
    kinds: Json<Vec<&'static str>>,
    model: Option<String>,
    base_url: Option<String>,
    api_key_ciphertext: Option<String>,
    enabled: bool,
    priority: i64,
    weight: i64,
    rpm: i64,
    burst: i64,
    max_concurrency: i64,
    tpm: Option<i64>,
    breaker: Json<switchyard_core::BreakerSettings>,
    timeout_ms: i64,
    cost: Json<switchyard_core::CostTable>,
    supports: [bool; 4],
    plugin: Option<String>,
    options: Json<Map<String, Value>>,
    description: Option<String>,
    owner: Option<String>,
    auth: Option<Json<StoredAuth>>,
    defaults: Option<Json<switchyard_core::Presets>>,
    fallback_models: Option<Json<Vec<String>>>,
}

/// Binds the 27 spec columns in the order the writes name them.
macro_rules! bind_spec {
    ($query:expr, $c:expr) => {
        $query
            .bind($c.name)
            .bind($c.provider)
            .bind($c.kinds)
            .bind($c.model)
            .bind($c.base_url)
            .bind($c.api_key_ciphertext)
            .bind($c.enabled)
            .bind($c.priority)
            .bind($c.weight)
            .bind($c.rpm)
            .bind($c.burst)
            .bind($c.max_concurrency)
            .bind($c.tpm)
            .bind($c.breaker)
            .bind($c.timeout_ms)
            .bind($c.cost)
            .bind($c.supports[0])
            .bind($c.supports[1])
            .bind($c.supports[2])
            .bind($c.supports[3])
            .bind($c.plugin)
            .bind($c.options)
            .bind($c.description)
            .bind($c.owner)
            .bind($c.auth)
            .bind($c.defaults)
            .bind($c.fallback_models)
    };
}

impl Store {
    fn spec_columns(&self, spec: &ProviderSpec) -> SpecColumns {
        SpecColumns {
            name: spec.name.clone(),
            provider: spec.provider.as_str(),
            kinds: Json(spec.kinds.iter().map(|k| k.as_str()).collect()),
            model: spec.model.clone(),
            base_url: spec.base_url.clone(),
            api_key_ciphertext: spec
                .api_key
                .as_ref()
                .map(|k| self.key().encrypt(k.expose())),
            enabled: spec.enabled,
            priority: i64::from(spec.priority),
            weight: i64::from(spec.weight),
            rpm: i64::from(spec.rate_limit.rpm),
            burst: i64::from(spec.rate_limit.burst),
            max_concurrency: i64::from(spec.rate_limit.max_concurrency),
            tpm: spec.rate_limit.tpm.map(i64::from),
            breaker: Json(spec.breaker),
            timeout_ms: i64::try_from(spec.timeout_ms).unwrap_or(i64::MAX),
            cost: Json(if spec.cost_is_default {
                switchyard_core::CostTable::default()
            } else {
                spec.cost.clone()
            }),
            supports: [
                spec.supports.images,
                spec.supports.files,
                spec.supports.audio,
                spec.supports.video,
            ],
            plugin: spec.plugin.clone(),
            options: Json(spec.options.clone()),
            description: spec.description.clone(),
            owner: spec.owner.clone(),
            auth: StoredAuth::encrypt(&spec.auth, self.key()).map(Json),
            defaults: (!spec.defaults.is_empty()).then(|| Json(spec.defaults.clone())),
            fallback_models: (!spec.fallback_models.is_empty())
                .then(|| Json(spec.fallback_models.clone())),
        }
    }

    /// Stores a new config (version 1).
    ///
    /// # Errors
    /// [`ConfigWriteError::NameTaken`] when the name is in use, or
    /// [`ConfigWriteError::Database`].
    pub async fn insert_provider(
        &self,
        spec: &ProviderSpec,
    ) -> Result<ProviderConfig, ConfigWriteError> {
        let now = Utc::now();
        let columns = self.spec_columns(spec);
        let sql = "INSERT INTO provider_configs (name, provider, kinds, model, base_url, \
            api_key_ciphertext, enabled, priority, weight, rpm, burst, max_concurrency, tpm, \
            breaker, timeout_ms, cost, supports_images, supports_files, supports_audio, \
            supports_video, plugin, options, description, owner, auth, defaults, \
            fallback_models, version, created_at, updated_at) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
            $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, 1, $28, $28) RETURNING id";
        let result: Result<i64, sqlx::Error> =
            on_pool!(self, |pool| bind_spec!(sqlx::query_scalar(sql), columns)
                .bind(now)
                .fetch_one(pool)
                .await);
        let id = result.map_err(|e| name_taken_or(e, &spec.name))?;
        Ok(ProviderConfig {
            id: ConfigId(id),
            spec: spec.clone(),
            version: 1,
            created_at: now,
            updated_at: now,
        })
    }

    /// Replaces a config's settings and bumps its version. With `expected_version`,
    /// refuses when the row changed since it was read.
    ///
    /// # Errors
    /// [`ConfigWriteError::NotFound`], [`ConfigWriteError::VersionConflict`],
    /// [`ConfigWriteError::NameTaken`], [`ConfigWriteError::Secret`] (reading the row
    /// back to tell the first two apart) or [`ConfigWriteError::Database`].
    pub async fn update_provider(
        &self,
        id: ConfigId,
        spec: &ProviderSpec,
        expected_version: Option<i64>,
    ) -> Result<ProviderConfig, ConfigWriteError> {
        let now = Utc::now();
        let columns = self.spec_columns(spec);
        let sql = "UPDATE provider_configs SET name = $1, provider = $2, kinds = $3, model = $4, \
            base_url = $5, api_key_ciphertext = $6, enabled = $7, priority = $8, weight = $9, \
            rpm = $10, burst = $11, max_concurrency = $12, tpm = $13, breaker = $14, \
            timeout_ms = $15, cost = $16, supports_images = $17, supports_files = $18, \
            supports_audio = $19, supports_video = $20, plugin = $21, options = $22, \
            description = $23, owner = $24, auth = $25, defaults = $26, \
            fallback_models = $27, version = version + 1, updated_at = $28 WHERE id = $29 \
            AND ($30 IS NULL OR version = $30) RETURNING version, created_at";
        let result: Result<Option<(i64, DateTime<Utc>)>, sqlx::Error> = on_pool!(self, |pool| {
            bind_spec!(sqlx::query_as(sql), columns)
                .bind(now)
                .bind(id.0)
                .bind(expected_version)
                .fetch_optional(pool)
                .await
        });
        match result.map_err(|e| name_taken_or(e, &spec.name))? {
            Some((version, created_at)) => Ok(ProviderConfig {
                id,
                spec: spec.clone(),
                version,
                created_at,
                updated_at: now,
            }),
            None => match self.get_provider(id).await? {
                None => Err(ConfigWriteError::NotFound(id)),
                Some(record) => Err(ConfigWriteError::VersionConflict {
                    id,
                    expected: expected_version.unwrap_or_default(),
                    actual: record.version,
                }),
            },
        }
    }

    /// Lays `patch` over the stored config, validates the result and stores it. A
    /// masked `api_key` in the patch (as read back from the API) means "unchanged".
    ///
    /// # Errors
    /// [`ConfigWriteError::NotFound`], [`ConfigWriteError::Invalid`] with field errors,
    /// a [`ConfigWriteError::VersionConflict`] when another writer got there first, or
    /// as [`Store::update_provider`].
    pub async fn patch_provider(
        &self,
        id: ConfigId,
        mut patch: ProviderConfigDraft,
    ) -> Result<ProviderConfig, ConfigWriteError> {
        let record = self
            .get_provider(id)
            .await?
            .ok_or(ConfigWriteError::NotFound(id))?;
        let current_masked = record.draft.api_key.as_ref().map(ApiKey::masked);
        if patch
            .api_key
            .as_ref()
            .is_some_and(|k| k.looks_masked() && Some(k.expose()) == current_masked.as_deref())
        {
            patch.api_key = None;
        }
        // An account never changes hands: a tenant's key made shared would serve (and
        // be billed for) every tenant, and a shared one made a tenant's would vanish
        // from the others' routing.
        if let Some(owner) = &patch.owner
            && record.draft.owner.as_ref() != Some(owner)
        {
            return Err(switchyard_core::ValidationError::single(
                "owner",
                "an account's owner cannot change; create an account for the new owner",
            )
            .into());
        }
        let spec = record.draft.clone().overlay(patch).validate()?;
        self.update_provider(id, &spec, Some(record.version)).await
    }

    /// Deletes a config; returns whether it existed.
    ///
    /// # Errors
    /// [`ConfigWriteError::Database`].
    pub async fn delete_provider(&self, id: ConfigId) -> Result<bool, ConfigWriteError> {
        let affected = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM provider_configs WHERE id = $1"
        )
        .bind(id.0)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(affected > 0)
    }

    /// One config by id.
    ///
    /// # Errors
    /// [`ConfigReadError::Database`] or [`ConfigReadError::Secret`].
    pub async fn get_provider(
        &self,
        id: ConfigId,
    ) -> Result<Option<ProviderRecord>, ConfigReadError> {
        let sql = format!("SELECT {COLUMNS} FROM provider_configs WHERE id = $1");
        let row: Option<ProviderRow> = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            sql.as_str()
        ))
        .bind(id.0)
        .fetch_optional(pool)
        .await)?;
        row.map(|row| self.record_from_row(row)).transpose()
    }

    /// One config by id or unique name (as in `route.config_id`).
    ///
    /// # Errors
    /// [`ConfigReadError::Database`] or [`ConfigReadError::Secret`].
    pub async fn find_provider(
        &self,
        reference: &ConfigRef,
    ) -> Result<Option<ProviderRecord>, ConfigReadError> {
        match reference {
            ConfigRef::Id(id) => self.get_provider(ConfigId(*id)).await,
            ConfigRef::Name(name) => {
                let sql = format!("SELECT {COLUMNS} FROM provider_configs WHERE name = $1");
                let row: Option<ProviderRow> = on_pool!(self, |pool| sqlx::query_as(
                    sqlx::AssertSqlSafe(sql.as_str())
                )
                .bind(name)
                .fetch_optional(pool)
                .await)?;
                row.map(|row| self.record_from_row(row)).transpose()
            }
        }
    }

    /// Configs matching `filter`, highest priority first, then by id.
    ///
    /// # Errors
    /// [`ConfigReadError::Database`] or [`ConfigReadError::Secret`].
    pub async fn list_providers(
        &self,
        filter: &ProviderFilter,
    ) -> Result<Vec<ProviderRecord>, ConfigReadError> {
        let sql = format!("SELECT {COLUMNS} FROM provider_configs ORDER BY priority DESC, id");
        let rows: Vec<ProviderRow> = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            sql.as_str()
        ))
        .fetch_all(pool)
        .await)?;
        let records = rows
            .into_iter()
            .map(|row| self.record_from_row(row))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(records
            .into_iter()
            .filter(|r| filter.matches(r))
            .skip(filter.offset)
            .take(filter.limit.unwrap_or(usize::MAX))
            .collect())
    }

    fn record_from_row(&self, row: ProviderRow) -> Result<ProviderRecord, ConfigReadError> {
        let id = ConfigId(row.id);
        let api_key = row
            .api_key_ciphertext
            .map(|c| self.key().decrypt(&c).map(ApiKey::new))
            .transpose()
            .map_err(|source| ConfigReadError::Secret { id, source })?;
        let mut problems = Vec::new();
        let auth = match row.auth.map(|v| serde_json::from_value::<StoredAuth>(v.0)) {
            None => None,
            Some(Ok(stored)) => Some(
                stored
                    .decrypt(self.key())
                    .map_err(|source| ConfigReadError::Secret { id, source })?,
            ),
            Some(Err(e)) => {
                problems.push(FieldError::new("auth", e.to_string()));
                None
            }
        };
        let kinds = Some(row.kinds.0).filter(|v| !v.is_null()).and_then(|v| {
            serde_json::from_value::<Vec<String>>(v)
                .map_err(|e| problems.push(FieldError::new("kinds", e.to_string())))
                .ok()
        });
        let breaker = row.breaker.and_then(|v| {
            serde_json::from_value(v.0)
                .map_err(|e| problems.push(FieldError::new("breaker", e.to_string())))
                .ok()
        });
        let cost = row.cost.and_then(|v| {
            serde_json::from_value(v.0)
                .map_err(|e| problems.push(FieldError::new("cost", e.to_string())))
                .ok()
        });
        let options = match row.options.0 {
            Value::Object(map) => Some(map),
            Value::Null => None,
            _ => {
                problems.push(FieldError::new("options", "must be a JSON object"));
                None
            }
        };
        let defaults = row.defaults.and_then(|v| {
            serde_json::from_value(v.0)
                .map_err(|e| problems.push(FieldError::new("defaults", e.to_string())))
                .ok()
        });
        let fallback_models = row.fallback_models.and_then(|v| {
            serde_json::from_value(v.0)
                .map_err(|e| problems.push(FieldError::new("fallback_models", e.to_string())))
                .ok()
        });
        let draft = ProviderConfigDraft {
            name: Some(row.name),
            provider: Some(row.provider),
            kinds,
            model: row.model,
            base_url: row.base_url,
            api_key,
            auth,
            owner: row.owner,
            enabled: Some(row.enabled),
            priority: Some(row.priority),
            weight: Some(row.weight),
            rate_limit: Some(RateLimitDraft {
                rpm: row.rpm,
                burst: row.burst,
                max_concurrency: row.max_concurrency,
                tpm: row.tpm,
            }),
            breaker,
            timeout_ms: Some(row.timeout_ms),
            cost,
            supports: Some(switchyard_core::Supports {
                images: row.supports_images,
                files: row.supports_files,
                audio: row.supports_audio,
                video: row.supports_video,
            }),
            plugin: row.plugin,
            options,
            defaults,
            fallback_models,
            description: row.description,
            ..ProviderConfigDraft::default()
        };
        Ok(ProviderRecord {
            id,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
            draft,
            problems,
        })
    }
}

/// A write's error: a unique violation is the name being taken (the only unique
/// column a write can hit).
fn name_taken_or(error: sqlx::Error, name: &str) -> ConfigWriteError {
    match error {
        sqlx::Error::Database(e) if e.is_unique_violation() => {
            ConfigWriteError::NameTaken(name.to_owned())
        }
        error => ConfigWriteError::Database(error),
    }
}
