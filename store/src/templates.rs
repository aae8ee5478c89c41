//! Prompt templates (issue 18 §2, the seed's `system_prompt_templates`): stored by
//! unique name, for `text` (the rendered text is the system prompt) or `image` (the
//! rendered text is the prompt). Rendering is the runtime's (`runtime/src/templates.rs`).

use chrono::{DateTime, Utc};

use crate::{QueryError, Store, on_pool};

/// A stored template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct PromptTemplate {
    /// Its unique name.
    pub name: String,
    /// `text` or `image`: the kinds it renders for.
    pub kind: String,
    /// The template text (Jinja syntax, rendered with minijinja).
    pub template: String,
    /// Whether requests may name it.
    pub enabled: bool,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "name, kind, template, enabled, created_at, updated_at";

impl Store {
    /// Every template, by name.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn templates(&self) -> Result<Vec<PromptTemplate>, QueryError> {
        let rows = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM system_prompt_templates ORDER BY name"
        )))
        .fetch_all(pool)
        .await)?;
        Ok(rows)
    }

    /// Template `name`, if there is one.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn template(&self, name: &str) -> Result<Option<PromptTemplate>, QueryError> {
        let row = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM system_prompt_templates WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(pool)
        .await)?;
        Ok(row)
    }

    /// Creates or replaces template `name`.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn put_template(
        &self,
        name: &str,
        kind: &str,
        template: &str,
        enabled: bool,
    ) -> Result<PromptTemplate, QueryError> {
        let now = Utc::now();
        let row = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO system_prompt_templates (name, kind, template, enabled, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (name) DO UPDATE SET \
             kind = excluded.kind, template = excluded.template, enabled = excluded.enabled, \
             updated_at = excluded.updated_at RETURNING {COLUMNS}"
        )))
        .bind(name)
        .bind(kind)
        .bind(template)
        .bind(enabled)
        .bind(now)
        .fetch_one(pool)
        .await)?;
        Ok(row)
    }

    /// Removes template `name`; false if there was none.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn delete_template(&self, name: &str) -> Result<bool, QueryError> {
        let affected = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM system_prompt_templates WHERE name = $1"
        )
        .bind(name)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(affected > 0)
    }
}
