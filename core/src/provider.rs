//! Provider configs: one account of one provider, as operators write it (draft), as
//! validation accepts it (spec) and as the database stores it (config).

mod config;
pub mod pricing;
mod provider_type;
mod secret;
mod validate;

pub use config::{
    BreakerDraft, BreakerSettings, CostTable, MockOptions, ProviderConfig, ProviderConfigDraft,
    ProviderSpec, RateLimit, RateLimitDraft, Supports,
};
pub use provider_type::ProviderType;
pub use secret::ApiKey;
pub use validate::{FieldError, ValidationError};
