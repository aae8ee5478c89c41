//! Feedback on a job's result (issue 18 §7): a rating from 1 to 5, a favorite mark and
//! a comment, by the job's own tenant, one per job (a second replaces the first).
//! Reported per config in the statistics.

use chrono::{DateTime, Utc};

use crate::{QueryError, Store, on_pool};

/// Feedback on one job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    /// 1 to 5, if rated.
    #[serde(default)]
    pub rating: Option<u8>,
    /// Whether the result is a favorite (`false` takes the mark back).
    #[serde(default)]
    pub favorite: Option<bool>,
    /// A comment.
    #[serde(default)]
    pub comment: Option<String>,
}

/// The longest comment kept, in characters.
pub const MAX_COMMENT: usize = 2_000;

impl Feedback {
    /// Checks what the store cannot; the message names the field.
    ///
    /// # Errors
    /// The first problem found.
    pub fn check(&self) -> Result<(), String> {
        if self.rating.is_some_and(|r| !(1..=5).contains(&r)) {
            return Err("rating: must be 1 to 5".to_owned());
        }
        if self
            .comment
            .as_ref()
            .is_some_and(|c| c.chars().count() > MAX_COMMENT)
        {
            return Err(format!("comment: at most {MAX_COMMENT} characters"));
        }
        if self.comment.as_ref().is_some_and(|c| c.contains('\0')) {
            return Err("comment: must not hold NUL characters".to_owned());
        }
        if self.rating.is_none() && self.favorite.is_none() && self.comment.is_none() {
            return Err("give a rating, favorite or comment".to_owned());
        }
        Ok(())
    }
}

impl Store {
    /// Stores `feedback` on task `task_id` of `tenant` (served by `config_id`),
    /// replacing any earlier feedback on it.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn set_feedback(
        &self,
        task_id: i64,
        tenant: &str,
        config_id: Option<i64>,
        feedback: &Feedback,
    ) -> Result<DateTime<Utc>, QueryError> {
        let now = Utc::now();
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO task_feedback (task_id, tenant, provider_config_id, rating, favorite, \
             comment, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (task_id) DO UPDATE SET rating = excluded.rating, \
             favorite = excluded.favorite, comment = excluded.comment, \
             updated_at = excluded.updated_at"
        )
        .bind(task_id)
        .bind(tenant)
        .bind(config_id)
        .bind(feedback.rating.map(i64::from))
        .bind(feedback.favorite.unwrap_or(false))
        .bind(&feedback.comment)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(now)
    }

    /// The feedback on task `task_id`, if any.
    ///
    /// # Errors
    /// [`QueryError::Database`].
    pub async fn feedback(&self, task_id: i64) -> Result<Option<Feedback>, QueryError> {
        let row: Option<(Option<i64>, bool, Option<String>)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT rating, favorite, comment FROM task_feedback WHERE task_id = $1")
                .bind(task_id)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.map(|(rating, favorite, comment)| Feedback {
            rating: rating.and_then(|r| u8::try_from(r).ok()),
            favorite: Some(favorite),
            comment,
        }))
    }
}
