//! Provider configs: one account of one provider, as operators write it (draft), as
//! validation accepts it (spec) and as the database stores it (config).

mod auth;
mod config;
mod limits;
mod presets;
pub mod pricing;
mod provider_type;
mod secret;
mod validate;

pub use auth::{OAuth2, OAuth2ClientAuth, OAuth2Grant, ProviderAuth};
pub use config::{MockOptions, ProviderConfig, ProviderConfigDraft, ProviderSpec, Supports};
pub use limits::{BreakerDraft, BreakerSettings, RateLimit, RateLimitDraft};
pub use presets::Presets;
pub use pricing::CostTable;
pub use provider_type::ProviderType;
pub use secret::ApiKey;
pub use validate::{FieldError, ValidationError};
