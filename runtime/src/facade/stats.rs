//! Statistics per provider config and feedback on jobs over the gateway (issue 18 §1,
//! §7): read from the database, so they survive config edits and restarts.

use chrono::{DateTime, Utc};

use super::Gateway;
use crate::store::{ConfigStats, Feedback, QueryError, StatsBucket, StatsBucketSize, Task};

impl Gateway {
    /// Each config's statistics over `[from, to)` (only `config`, if given), and the
    /// per-bucket series if `bucket` is given.
    ///
    /// # Errors
    /// The store's.
    pub async fn config_stats(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        config: Option<i64>,
        bucket: Option<StatsBucketSize>,
    ) -> Result<(Vec<ConfigStats>, Vec<StatsBucket>), QueryError> {
        let store = &self.parts.store;
        let stats = store.config_stats(from, to, config).await?;
        let series = match bucket {
            Some(size) => store.config_stats_series(from, to, config, size).await?,
            None => Vec::new(),
        };
        Ok((stats, series))
    }

    /// Stores `feedback` on `task` (the caller checked the tenant), replacing any.
    ///
    /// # Errors
    /// The store's.
    pub async fn set_feedback(
        &self,
        task: &Task,
        feedback: &Feedback,
    ) -> Result<DateTime<Utc>, QueryError> {
        self.parts
            .store
            .set_feedback(
                task.id,
                task.tenant.as_str(),
                task.provider_config_id.map(|c| c.0),
                feedback,
            )
            .await
    }
}
