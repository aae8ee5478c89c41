//! [`StoreVault`]: the OAuth2 token vault on the database (issue 16 §7). A rotated
//! refresh token is stored encrypted with the master key (`oauth_refresh_tokens`),
//! and a refresh runs under a cluster-wide lease (`leases`, named after the client),
//! so that replicas refresh one at a time, each from the newest token.

use std::{sync::Arc, time::Duration};

use switchyard_core::ApiKey;
use switchyard_providers::{
    BoxFuture,
    oauth::{TokenVault, VaultError, VaultLock},
};

use crate::store::Store;

/// How long one refresh may hold the lock: the token fetch's own limit (15 s) and a
/// margin. A holder that dies frees it when this runs out.
const LOCK_FOR: Duration = Duration::from_secs(30);
/// How long a refresh waits for another replica's before it goes on without the lock.
const WAIT_AT_MOST: Duration = Duration::from_secs(35);
/// How often a waiting refresh looks again.
const POLL: Duration = Duration::from_millis(50);

/// The token vault on `store` (module docs).
#[derive(Debug, Clone)]
pub struct StoreVault {
    store: Store,
}

impl StoreVault {
    /// A vault over `store`, shareable by every adapter the engine builds.
    pub fn shared(store: Store) -> Arc<dyn TokenVault> {
        Arc::new(Self { store })
    }
}

fn failed(e: impl std::fmt::Display) -> VaultError {
    VaultError(e.to_string())
}

fn lease_name(client: &str) -> String {
    format!("oauth2-refresh:{client}")
}

impl TokenVault for StoreVault {
    fn lock(&self, client: &str) -> BoxFuture<'static, Result<VaultLock, VaultError>> {
        let store = self.store.clone();
        let name = lease_name(client);
        Box::pin(async move {
            let holder = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
            let started = tokio::time::Instant::now();
            loop {
                let now = chrono::Utc::now().timestamp_millis();
                let until = now + i64::try_from(LOCK_FOR.as_millis()).unwrap_or(i64::MAX);
                if store
                    .take_lease(&name, &holder, now, until, now)
                    .await
                    .map_err(failed)?
                {
                    return Ok(VaultLock(holder));
                }
                if started.elapsed() >= WAIT_AT_MOST {
                    return Err(VaultError(
                        "another replica's refresh held the lock too long".to_owned(),
                    ));
                }
                tokio::time::sleep(POLL).await;
            }
        })
    }

    fn unlock(&self, client: &str, lock: VaultLock) -> BoxFuture<'static, Result<(), VaultError>> {
        let store = self.store.clone();
        let name = lease_name(client);
        Box::pin(async move { store.release_lease(&name, &lock.0).await.map_err(failed) })
    }

    fn load(&self, client: &str) -> BoxFuture<'static, Result<Option<ApiKey>, VaultError>> {
        let store = self.store.clone();
        let client = client.to_owned();
        Box::pin(async move {
            Ok(store
                .oauth_refresh_token(&client)
                .await
                .map_err(failed)?
                .map(ApiKey::new))
        })
    }

    fn store(&self, client: &str, refresh: ApiKey) -> BoxFuture<'static, Result<(), VaultError>> {
        let store = self.store.clone();
        let client = client.to_owned();
        Box::pin(async move {
            store
                .put_oauth_refresh_token(&client, refresh.expose())
                .await
                .map_err(failed)
        })
    }
}
