//! Batch jobs over the gateway: the HTTP crate takes batches in, reads and cancels
//! them through [`crate::batches::Batches`].

use super::Gateway;

impl Gateway {
    /// Batch jobs: taking them in, their counts and results, cancelling.
    pub fn batches(&self) -> &crate::batches::Batches {
        &self.parts.batches
    }
}
