//! Tenants' webhooks over the gateway: the HTTP crate registers, lists and removes
//! endpoints and reads their delivery log through [`crate::webhooks::Webhooks`].

use super::Gateway;

impl Gateway {
    /// Tenants' webhook endpoints: registration, the list, the delivery log.
    pub fn webhooks(&self) -> &crate::webhooks::Webhooks {
        &self.parts.webhooks
    }
}
