//! Which accounts a tenant's requests may use: the operator's shared accounts, and the
//! tenant's own (bring your own key, an account whose `owner` is the tenant). Another
//! tenant's own accounts are never visible: routing neither uses nor reports them.

use serde::{Deserialize, Serialize};

use crate::provider::ProviderSpec;

/// How a tenant's own accounts are used next to the shared ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnAccounts {
    /// Own accounts first, then the shared ones (the default).
    #[default]
    Prefer,
    /// Own accounts only.
    Only,
    /// Shared accounts only; own accounts stay stored but serve nothing.
    Never,
}

impl OwnAccounts {
    /// The setting's name.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnAccounts::Prefer => "prefer",
            OwnAccounts::Only => "only",
            OwnAccounts::Never => "never",
        }
    }
}

impl std::str::FromStr for OwnAccounts {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "prefer" => Ok(OwnAccounts::Prefer),
            "only" => Ok(OwnAccounts::Only),
            "never" => Ok(OwnAccounts::Never),
            other => Err(format!("'{other}' is not prefer, only or never")),
        }
    }
}

/// Whose account an instance is, seen from one tenant's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// A shared account of the operator.
    Shared,
    /// The requesting tenant's own account.
    Own,
    /// Another tenant's own account: invisible.
    Foreign,
}

/// Whose account `owner` is for a request of `tenant`.
pub fn ownership(owner: Option<&str>, tenant: &str) -> Ownership {
    match owner {
        None => Ownership::Shared,
        Some(owner) if owner == tenant => Ownership::Own,
        Some(_) => Ownership::Foreign,
    }
}

impl Ownership {
    /// The ownership of an instance's spec for `tenant`.
    pub fn of(spec: &ProviderSpec, tenant: &str) -> Ownership {
        ownership(spec.owner.as_deref(), tenant)
    }

    /// Why `mode` keeps this account out of a request, if it does (a foreign account
    /// is kept out without a reason: it is not there at all).
    pub fn refused_by(self, mode: OwnAccounts) -> Option<&'static str> {
        match (self, mode) {
            (Ownership::Own, OwnAccounts::Never) => {
                Some("the tenant's own accounts are switched off (own_accounts = never)")
            }
            (Ownership::Shared, OwnAccounts::Only) => Some(
                "it is a shared account and the tenant uses only its own (own_accounts = only)",
            ),
            _ => None,
        }
    }
}
