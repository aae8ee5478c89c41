//! Which tenants, and which users of a tenant, intake found over a limit (#16): not
//! asked again until their limit allows, and how long their commands have waited.
//!
//! A tenant over its own limit holds up only its own queue; a user over its user limit
//! holds up only its own commands (the tenant's other users go on, see
//! [`super::fair::Turn::Next`]). A command waits at most `max_wait` from the moment its
//! tenant (or user) was first refused and has started nothing since, or from its own
//! arrival if that is later: time spent waiting for a free slot of the process is not
//! counted against it.

use std::collections::HashMap;

use tokio::time::{Duration, Instant};

use super::fair::Banded;
use crate::limits::Limited;

/// At most this many users are remembered as over their limit; beyond it, the ones
/// whose limit allows again are forgotten first.
const MAX_USERS: usize = 10_000;

/// A command waiting in intake's queue.
pub(super) trait Waiting {
    /// When it arrived.
    fn since(&self) -> Instant;
    /// Its user, if it names one.
    fn user(&self) -> Option<&str>;
}

/// One tenant's or user's refusal.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// Not asked again before this.
    until: Instant,
    /// Refused for requests at once: a finished command may free a slot sooner.
    at_once: bool,
    /// First refused, with nothing started since.
    since: Instant,
}

impl Block {
    fn held(&self, now: Instant) -> bool {
        self.until > now
    }

    /// When a command that arrived at `arrived` has waited `max_wait`.
    fn expiry(&self, arrived: Instant, max_wait: Duration) -> Instant {
        arrived.max(self.since) + max_wait
    }
}

/// The tenants and users intake found over a limit.
#[derive(Debug, Default)]
pub(super) struct Blocks {
    tenants: HashMap<String, Block>,
    /// Per tenant, its users over their own limits (looked up without allocating).
    users: HashMap<String, HashMap<String, Block>>,
    /// How many users `users` holds in all.
    user_count: usize,
}

impl Blocks {
    fn user_block(&self, tenant: &str, user: &str) -> Option<&Block> {
        self.users.get(tenant)?.get(user)
    }

    /// Whether `tenant` was refused and has started nothing since (its commands then
    /// count against its share of the window).
    pub(super) fn is_blocked(&self, tenant: &str) -> bool {
        self.tenants.contains_key(tenant)
    }

    /// Whether `tenant` is not to be asked now.
    pub(super) fn tenant_held(&self, tenant: &str, now: Instant) -> bool {
        self.tenants.get(tenant).is_some_and(|b| b.held(now))
    }

    /// Whether `user` of `tenant` is not to be asked now.
    pub(super) fn user_held(&self, tenant: &str, user: Option<&str>, now: Instant) -> bool {
        let Some(user) = user else { return false };
        self.user_block(tenant, user).is_some_and(|b| b.held(now))
    }

    /// Records a refusal: of the user when its own limit refused, else of the tenant.
    pub(super) fn refused(
        &mut self,
        tenant: &str,
        user: Option<&str>,
        limited: &Limited,
        now: Instant,
    ) {
        let until = now + limited.retry_after;
        let update = |block: &mut Block| {
            block.until = until;
            block.at_once = limited.at_once;
        };
        let fresh = Block {
            until,
            at_once: limited.at_once,
            since: now,
        };
        match user.filter(|_| limited.user) {
            Some(user) => {
                if self.user_count >= MAX_USERS {
                    for users in self.users.values_mut() {
                        users.retain(|_, b| b.held(now));
                    }
                    self.users.retain(|_, users| !users.is_empty());
                    self.user_count = self.users.values().map(HashMap::len).sum();
                }
                let users = self.users.entry(tenant.to_owned()).or_default();
                match users.get_mut(user) {
                    Some(block) => update(block),
                    None => {
                        users.insert(user.to_owned(), fresh);
                        self.user_count += 1;
                    }
                }
            }
            None => {
                self.tenants
                    .entry(tenant.to_owned())
                    .and_modify(update)
                    .or_insert(fresh);
            }
        }
    }

    /// A command of `tenant` (and `user`) started: they are no longer waiting.
    pub(super) fn started(&mut self, tenant: &str, user: Option<&str>) {
        self.tenants.remove(tenant);
        if let Some(user) = user
            && let Some(users) = self.users.get_mut(tenant)
            && users.remove(user).is_some()
        {
            self.user_count -= 1;
            if users.is_empty() {
                self.users.remove(tenant);
            }
        }
    }

    /// A command ended: those refused for requests at once may be asked again.
    pub(super) fn slot_freed(&mut self, now: Instant) {
        let users = self.users.values_mut().flat_map(HashMap::values_mut);
        for block in self.tenants.values_mut().chain(users) {
            if block.at_once {
                block.until = block.until.min(now);
            }
        }
    }

    /// Takes out of `queue` the commands of refused tenants and users that waited
    /// `max_wait`, and forgets those with nothing queued.
    pub(super) fn expired<T: Waiting>(
        &mut self,
        queue: &mut Banded<T>,
        now: Instant,
        max_wait: Duration,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for (tenant, block) in &self.tenants {
            // Queued in arrival order: the expired ones come first.
            out.extend(
                queue.pop_expired(tenant, |held| block.expiry(held.since(), max_wait) <= now),
            );
        }
        // One pass over each such tenant's queue, whatever number of its users wait.
        for (tenant, users) in &self.users {
            out.extend(queue.remove_where(tenant, |held| {
                held.user()
                    .and_then(|user| users.get(user))
                    .is_some_and(|block| block.expiry(held.since(), max_wait) <= now)
            }));
        }
        self.tenants.retain(|tenant, _| queue.queued(tenant) > 0);
        self.users.retain(|tenant, _| queue.queued(tenant) > 0);
        self.user_count = self.users.values().map(HashMap::len).sum();
        out
    }

    /// The next moment something changes without a new delivery or a finished
    /// command: a refusal's end, or a command's longest wait.
    pub(super) fn next_wake<T: Waiting>(
        &self,
        queue: &Banded<T>,
        now: Instant,
        max_wait: Duration,
    ) -> Option<Instant> {
        let ends = self
            .tenants
            .values()
            .chain(self.users.values().flat_map(HashMap::values))
            .map(|b| b.until)
            .filter(|until| *until > now)
            .min();
        let tenant_waits = self.tenants.iter().flat_map(|(tenant, block)| {
            queue
                .fronts_of(tenant)
                .map(move |held| block.expiry(held.since(), max_wait))
        });
        let user_waits = self.users.iter().flat_map(|(tenant, users)| {
            queue.items_of(tenant).filter_map(move |held| {
                let block = users.get(held.user()?)?;
                Some(block.expiry(held.since(), max_wait))
            })
        });
        ends.into_iter().chain(tenant_waits).chain(user_waits).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Cmd(&'static str, Option<&'static str>, Instant);

    impl Waiting for Cmd {
        fn since(&self) -> Instant {
            self.2
        }
        fn user(&self) -> Option<&str> {
            self.1
        }
    }

    fn limited(user: bool) -> Limited {
        Limited {
            retry_after: Duration::from_millis(100),
            at_once: true,
            user,
            message: String::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_counts_from_the_first_refusal_not_from_arrival() {
        let max_wait = Duration::from_secs(30);
        let mut queue = Banded::default();
        let arrived = Instant::now();
        queue.push(4, "acme", Cmd("a", None, arrived));
        // 40 s waiting for a free slot of the process, then refused.
        tokio::time::advance(Duration::from_secs(40)).await;
        let mut blocks = Blocks::default();
        let now = Instant::now();
        blocks.refused("acme", None, &limited(false), now);
        assert!(blocks.expired(&mut queue, now, max_wait).is_empty());
        assert_eq!(
            blocks.next_wake(&queue, now, max_wait),
            Some(now + Duration::from_millis(100))
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        let gone = blocks.expired(&mut queue, Instant::now(), max_wait);
        assert_eq!(gone.len(), 1);
        assert!(!blocks.is_blocked("acme"), "nothing queued: forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_user_holds_up_only_itself() {
        let max_wait = Duration::from_secs(30);
        let now = Instant::now();
        let mut queue = Banded::default();
        queue.push(4, "acme", Cmd("b1", Some("bob"), now));
        queue.push(4, "acme", Cmd("c1", Some("carol"), now));
        let mut blocks = Blocks::default();
        blocks.refused("acme", Some("bob"), &limited(true), now);
        assert!(blocks.user_held("acme", Some("bob"), now));
        assert!(!blocks.user_held("acme", Some("carol"), now));
        assert!(!blocks.tenant_held("acme", now));
        // A finished command frees the slot of those refused for requests at once.
        blocks.slot_freed(now);
        assert!(!blocks.user_held("acme", Some("bob"), now));
        // Bob's command expires alone; carol's stays.
        let later = now + max_wait;
        let gone = blocks.expired(&mut queue, later, max_wait);
        assert_eq!(gone, [Cmd("b1", Some("bob"), now)]);
        assert_eq!(queue.queued("acme"), 1);
        blocks.started("acme", Some("bob"));
        assert!(blocks.next_wake(&queue, later, max_wait).is_none());
    }
}
