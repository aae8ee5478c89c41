//! Prompt templates over the gateway (issue 18 §2): the admin API's reads and writes
//! (each write checked, and told to this process's cache), and the rendering of a
//! posted job before it is stored.

use switchyard_core::Command;

use super::Gateway;
use crate::{
    store::{PromptTemplate, QueryError},
    templates::{TemplateError, check},
};

impl Gateway {
    /// Every template.
    ///
    /// # Errors
    /// The store's.
    pub async fn templates(&self) -> Result<Vec<PromptTemplate>, QueryError> {
        self.parts.store.templates().await
    }

    /// Template `name`, if there is one.
    ///
    /// # Errors
    /// The store's.
    pub async fn template(&self, name: &str) -> Result<Option<PromptTemplate>, QueryError> {
        self.parts.store.template(name).await
    }

    /// Creates or replaces template `name` once it checks (kind, size, syntax).
    ///
    /// # Errors
    /// [`TemplateError::Invalid`] naming the field, or the store's.
    pub async fn put_template(
        &self,
        name: &str,
        kind: &str,
        text: &str,
        enabled: bool,
    ) -> Result<PromptTemplate, TemplateError> {
        check(kind, text).map_err(TemplateError::Invalid)?;
        let stored = self
            .parts
            .store
            .put_template(name, kind, text, enabled)
            .await?;
        self.parts.pipeline.templates().forget(name);
        Ok(stored)
    }

    /// Removes template `name`; false if there was none.
    ///
    /// # Errors
    /// The store's.
    pub async fn delete_template(&self, name: &str) -> Result<bool, QueryError> {
        let deleted = self.parts.store.delete_template(name).await?;
        self.parts.pipeline.templates().forget(name);
        Ok(deleted)
    }

    /// Parses and checks a posted command, rendering the template it names.
    ///
    /// # Errors
    /// [`TemplateError::Invalid`] with the first problem, or the store's.
    pub async fn parse_command(&self, body: &[u8]) -> Result<Command, TemplateError> {
        self.parts
            .pipeline
            .templates()
            .parse_command(body, None)
            .await
    }
}
