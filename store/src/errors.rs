//! The error of the queries that only read or write rows: tasks, tenant keys, usage,
//! quotas, plugin reads and the change-notice plumbing. Operations that can fail in
//! more ways (opening the store, provider config and plugin registry writes, provider
//! reads that decrypt keys, the group commit) have error types of their own, next to
//! them.

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored value could not be read back.
    #[error("corrupt row in {table}: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl QueryError {
    /// The permanent refusal this is, if the database refused the write's values for
    /// good (see [`crate::Refusal`]); `None` for an error a retry may get past.
    pub fn refusal(&self) -> Option<crate::Refusal> {
        match self {
            QueryError::Database(error) => crate::refusal::refusal_of(error),
            QueryError::Corrupt { .. } => None,
        }
    }
}
