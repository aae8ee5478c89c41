//! Seeding provider configs from the config file's `[[providers]]`: each name is seeded
//! once, ever. Later edits or deletions by operators are never overwritten, because a
//! seeded name is remembered in `config_seeds` even after its config is deleted.

use chrono::Utc;
use switchyard_core::{FieldError, ProviderConfigDraft, ValidationError};

use super::{ConfigWriteError, Store, on_pool};

/// What seeding did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// Names inserted now.
    pub inserted: Vec<String>,
    /// Names seeded before (left as operators have them).
    pub already_seeded: Vec<String>,
    /// Names that an operator had created before the seed came (left alone).
    pub existing: Vec<String>,
}

impl Store {
    /// Inserts each seed whose name was never seeded before.
    ///
    /// # Errors
    /// [`ConfigWriteError::Invalid`] naming `providers[i].field` for a bad seed (nothing
    /// is written then), or [`ConfigWriteError::Database`].
    pub async fn seed_providers(
        &self,
        seeds: &[ProviderConfigDraft],
    ) -> Result<SeedReport, ConfigWriteError> {
        let mut specs = Vec::with_capacity(seeds.len());
        let mut errors = Vec::new();
        for (i, seed) in seeds.iter().enumerate() {
            match seed.validate() {
                Ok(spec) => specs.push(spec),
                Err(e) => errors.extend(
                    e.errors
                        .into_iter()
                        .map(|f| FieldError::new(format!("providers[{i}].{}", f.path), f.message)),
                ),
            }
        }
        ValidationError::from_errors(errors)?;

        let mut report = SeedReport::default();
        for spec in specs {
            let claimed = on_pool!(self, |pool| {
                sqlx::query(
                "INSERT INTO config_seeds (name, seeded_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"
            )
            .bind(&spec.name)
            .bind(Utc::now())
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
            })?;
            if claimed == 0 {
                report.already_seeded.push(spec.name.clone());
                continue;
            }
            match self.insert_provider(&spec).await {
                Ok(_) => report.inserted.push(spec.name.clone()),
                Err(ConfigWriteError::NameTaken(name)) => report.existing.push(name),
                Err(e) => {
                    // Release the claim so the next start tries this seed again.
                    on_pool!(self, |pool| sqlx::query(
                        "DELETE FROM config_seeds WHERE name = $1"
                    )
                    .bind(&spec.name)
                    .execute(pool)
                    .await
                    .map(|_| ()))?;
                    return Err(e);
                }
            }
        }
        Ok(report)
    }
}
