//! The fair queue of intake (#16): deliveries pulled but not yet started, one queue per
//! tenant, taken round-robin, so that one tenant's backlog does not starve another's
//! commands once every slot of the process is busy.
//!
//! Pure bookkeeping: intake decides, per head, whether its tenant may start it now.

use std::collections::{HashMap, VecDeque};

/// Per-tenant queues taken in turn.
#[derive(Debug)]
pub(super) struct FairQueue<T> {
    queues: HashMap<String, VecDeque<T>>,
    /// Tenants with something queued, in the order of their next turn.
    ring: VecDeque<String>,
    len: usize,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        Self {
            queues: HashMap::new(),
            ring: VecDeque::new(),
            len: 0,
        }
    }
}

/// What to do with an item of a tenant's queue, offered oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// Take it: the tenant goes to the back of the ring.
    Take,
    /// Leave it and the rest of the tenant's queue (the tenant is at a limit); try the
    /// next tenant.
    Skip,
    /// Leave it (its user is at a limit) and offer the tenant's next item, up to
    /// [`LOOK_AHEAD`] of them.
    Next,
}

/// How many of one tenant's items a take offers at most: past a user held up at its
/// limit, to the tenant's other users' items.
pub(super) const LOOK_AHEAD: usize = 32;

impl<T> FairQueue<T> {
    /// Items queued.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `item` at the back of `tenant`'s queue.
    pub(super) fn push(&mut self, tenant: &str, item: T) {
        let queue = self.queues.entry(tenant.to_owned()).or_default();
        if queue.is_empty() {
            self.ring.push_back(tenant.to_owned());
        }
        queue.push_back(item);
        self.len += 1;
    }

    /// Offers each tenant's items in turn, from the tenant whose turn it is, until
    /// `decide` takes one: that item, and its tenant goes to the back of the ring. Each
    /// tenant's oldest item is offered, and the ones after it while `decide` answers
    /// [`Turn::Next`] (at most [`LOOK_AHEAD`]); `None` if none was taken.
    pub(super) fn take(&mut self, mut decide: impl FnMut(&str, &T) -> Turn) -> Option<T> {
        for _ in 0..self.ring.len() {
            let tenant = self.ring.pop_front()?;
            let queue = self.queues.get_mut(&tenant)?;
            let mut chosen = None;
            for (at, item) in queue.iter().enumerate().take(LOOK_AHEAD) {
                match decide(&tenant, item) {
                    Turn::Take => {
                        chosen = Some(at);
                        break;
                    }
                    Turn::Skip => break,
                    Turn::Next => {}
                }
            }
            let Some(at) = chosen else {
                self.ring.push_back(tenant);
                continue;
            };
            let item = queue.remove(at);
            if queue.is_empty() {
                self.queues.remove(&tenant);
            } else {
                self.ring.push_back(tenant);
            }
            if item.is_some() {
                self.len -= 1;
            }
            return item;
        }
        None
    }

    /// The newest item `tenant` has queued, taken out.
    pub(super) fn pop_newest(&mut self, tenant: &str) -> Option<T> {
        let item = self.queues.get_mut(tenant)?.pop_back();
        self.settle(tenant, usize::from(item.is_some()));
        item
    }

    /// `taken` items of `tenant` left: its queue leaves the ring once empty.
    fn settle(&mut self, tenant: &str, taken: usize) {
        if self.queues.get(tenant).is_some_and(VecDeque::is_empty) {
            self.queues.remove(tenant);
            self.ring.retain(|t| t != tenant);
        }
        self.len -= taken;
    }

    /// The oldest item `tenant` has queued.
    pub(super) fn front_of(&self, tenant: &str) -> Option<&T> {
        self.queues.get(tenant).and_then(VecDeque::front)
    }

    /// Removes `tenant`'s oldest items while `expired` says so (they are queued in
    /// arrival order, so the expired ones come first).
    pub(super) fn pop_expired(
        &mut self,
        tenant: &str,
        mut expired: impl FnMut(&T) -> bool,
    ) -> Vec<T> {
        let mut out = Vec::new();
        let Some(queue) = self.queues.get_mut(tenant) else {
            return out;
        };
        while queue.front().is_some_and(&mut expired) {
            out.extend(queue.pop_front());
        }
        self.settle(tenant, out.len());
        out
    }

    /// Removes `tenant`'s items that `leave` picks, wherever they stand in its queue.
    pub(super) fn remove_where(
        &mut self,
        tenant: &str,
        mut leave: impl FnMut(&T) -> bool,
    ) -> Vec<T> {
        let Some(queue) = self.queues.get_mut(tenant) else {
            return Vec::new();
        };
        let out = take_where(queue, &mut leave);
        self.settle(tenant, out.len());
        out
    }

    /// `tenant`'s items, oldest first.
    pub(super) fn items_of<'a>(&'a self, tenant: &str) -> impl Iterator<Item = &'a T> + 'a {
        self.queues.get(tenant).into_iter().flatten()
    }

    /// Removes and returns every item `expired` (given its tenant) says must leave the
    /// queue now.
    pub(super) fn drain_where(&mut self, mut expired: impl FnMut(&str, &T) -> bool) -> Vec<T> {
        let mut out = Vec::new();
        for (tenant, queue) in &mut self.queues {
            out.extend(take_where(queue, |item| expired(tenant, item)));
        }
        self.queues.retain(|_, q| !q.is_empty());
        let queues = &self.queues;
        self.ring.retain(|t| queues.contains_key(t));
        self.len -= out.len();
        out
    }

    /// Every item, mutably (to keep their deliveries alive).
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.queues.values_mut().flat_map(|q| q.iter_mut())
    }

    /// Empties the queue.
    pub(super) fn drain_all(&mut self) -> Vec<T> {
        self.drain_where(|_, _| true)
    }
}

/// Takes out of `queue` the items `leave` picks, keeping the others in order.
fn take_where<T>(queue: &mut VecDeque<T>, mut leave: impl FnMut(&T) -> bool) -> Vec<T> {
    let mut out = Vec::new();
    let mut kept = VecDeque::with_capacity(queue.len());
    for item in queue.drain(..) {
        if leave(&item) {
            out.push(item);
        } else {
            kept.push_back(item);
        }
    }
    *queue = kept;
    out
}

/// The protocol's priorities, 1 (urgent) to 10 (background).
pub(super) const PRIORITIES: usize = 10;

/// One [`FairQueue`] per priority: a take offers the most urgent priority's tenants
/// first, in turn, and goes on to the next priority only when none of them is taken.
#[derive(Debug)]
pub(super) struct Banded<T> {
    bands: [FairQueue<T>; PRIORITIES],
    /// Items each tenant has queued, over every priority.
    per_tenant: HashMap<String, usize>,
}

impl<T> Default for Banded<T> {
    fn default() -> Self {
        Self {
            bands: std::array::from_fn(|_| FairQueue::default()),
            per_tenant: HashMap::new(),
        }
    }
}

/// A command's priority (PROTOCOL §2: 1 urgent … 10 background; anything else, which
/// validation refuses later, as the default 5) as its band.
pub(super) fn band(priority: Option<i64>) -> usize {
    match priority {
        Some(p @ 1..=10) => usize::try_from(p - 1).unwrap_or(4),
        _ => 4,
    }
}

impl<T> Banded<T> {
    /// Items queued.
    pub(super) fn len(&self) -> usize {
        self.bands.iter().map(FairQueue::len).sum()
    }

    /// Whether nothing is queued.
    pub(super) fn is_empty(&self) -> bool {
        self.bands.iter().all(FairQueue::is_empty)
    }

    /// Tenants with something queued.
    pub(super) fn tenants(&self) -> usize {
        self.per_tenant.len()
    }

    /// Items `tenant` has queued.
    pub(super) fn queued(&self, tenant: &str) -> usize {
        self.per_tenant.get(tenant).copied().unwrap_or(0)
    }

    /// Queues `item` of `tenant` in `band` (0: most urgent).
    pub(super) fn push(&mut self, band: usize, tenant: &str, item: T) {
        let band = band.min(PRIORITIES - 1);
        self.bands[band].push(tenant, item);
        *self.per_tenant.entry(tenant.to_owned()).or_default() += 1;
    }

    /// [`FairQueue::take`] over the bands, most urgent first.
    pub(super) fn take(&mut self, mut decide: impl FnMut(&str, &T) -> Turn) -> Option<T> {
        let mut tenant_of = None;
        let taken = self.bands.iter_mut().find_map(|band| {
            band.take(|tenant, item| {
                let turn = decide(tenant, item);
                if turn == Turn::Take {
                    tenant_of = Some(tenant.to_owned());
                }
                turn
            })
        });
        if let Some(tenant) = tenant_of {
            self.forget(&tenant, 1);
        }
        taken
    }

    fn forget(&mut self, tenant: &str, count: usize) {
        if let Some(queued) = self.per_tenant.get_mut(tenant) {
            *queued = queued.saturating_sub(count);
            if *queued == 0 {
                self.per_tenant.remove(tenant);
            }
        }
    }

    /// [`FairQueue::pop_expired`] over the bands: `tenant`'s items that waited too
    /// long, without looking at anyone else's.
    pub(super) fn pop_expired(
        &mut self,
        tenant: &str,
        mut expired: impl FnMut(&T) -> bool,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for band in &mut self.bands {
            out.extend(band.pop_expired(tenant, &mut expired));
        }
        self.forget(tenant, out.len());
        out
    }

    /// [`FairQueue::remove_where`] over the bands.
    pub(super) fn remove_where(
        &mut self,
        tenant: &str,
        mut leave: impl FnMut(&T) -> bool,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for band in &mut self.bands {
            out.extend(band.remove_where(tenant, &mut leave));
        }
        self.forget(tenant, out.len());
        out
    }

    /// `tenant`'s items in every band.
    pub(super) fn items_of<'a>(&'a self, tenant: &'a str) -> impl Iterator<Item = &'a T> + 'a {
        self.bands
            .iter()
            .flat_map(move |band| band.items_of(tenant))
    }

    /// Takes out `tenant`'s newest item of its least urgent band, if that band is less
    /// urgent than `than` (0: most urgent).
    pub(super) fn pop_least_urgent(&mut self, tenant: &str, than: usize) -> Option<T> {
        let least = (0..PRIORITIES)
            .rev()
            .find(|&band| self.bands[band].front_of(tenant).is_some())?;
        if least <= than {
            return None;
        }
        let item = self.bands[least].pop_newest(tenant);
        if item.is_some() {
            self.forget(tenant, 1);
        }
        item
    }

    /// `tenant`'s oldest item in each band.
    pub(super) fn fronts_of<'a>(&'a self, tenant: &'a str) -> impl Iterator<Item = &'a T> + 'a {
        self.bands
            .iter()
            .filter_map(move |band| band.front_of(tenant))
    }

    /// Every item, mutably.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.bands.iter_mut().flat_map(FairQueue::iter_mut)
    }

    /// Empties the queue.
    pub(super) fn drain_all(&mut self) -> Vec<T> {
        self.per_tenant.clear();
        self.bands
            .iter_mut()
            .flat_map(FairQueue::drain_all)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_urgent_priority_goes_first_and_tenants_take_turns_within_it() {
        let mut queue = Banded::default();
        for i in 0..50 {
            queue.push(band(Some(10)), "flood", format!("bg{i}"));
        }
        queue.push(band(Some(5)), "calm", "normal".to_owned());
        queue.push(band(Some(1)), "flood", "urgent-f".to_owned());
        queue.push(band(Some(1)), "calm", "urgent-c".to_owned());
        assert_eq!(queue.len(), 53);
        assert_eq!(queue.queued("flood"), 51);
        let taken: Vec<String> = std::iter::from_fn(|| queue.take(|_, _| Turn::Take))
            .take(4)
            .collect();
        assert_eq!(taken, ["urgent-f", "urgent-c", "normal", "bg0"]);
        assert_eq!(queue.queued("calm"), 0);
        assert_eq!(queue.tenants(), 1);
        // A tenant skipped in the urgent band leaves the next band its turn.
        queue.push(band(Some(1)), "blocked", "u".to_owned());
        let next = queue.take(|tenant, _| {
            if tenant == "blocked" {
                Turn::Skip
            } else {
                Turn::Take
            }
        });
        assert_eq!(next.as_deref(), Some("bg1"));
        assert_eq!(queue.fronts_of("blocked").count(), 1);
        // Over its share, a more urgent command takes the least urgent one's place.
        assert_eq!(
            queue.pop_least_urgent("flood", band(Some(9))).as_deref(),
            Some("bg49")
        );
        assert_eq!(queue.pop_least_urgent("flood", band(Some(10))), None);
        assert_eq!(queue.pop_least_urgent("blocked", band(Some(1))), None);
        assert_eq!(queue.queued("flood"), 47);
        assert_eq!(queue.pop_expired("blocked", |_| true).len(), 1);
        assert_eq!(queue.queued("blocked"), 0);
        assert_eq!(queue.fronts_of("blocked").count(), 0);
        assert_eq!(queue.drain_all().len(), 47);
        assert!(queue.is_empty());
    }

    #[test]
    fn priorities_map_to_bands_and_bad_ones_to_the_default() {
        assert_eq!(band(Some(1)), 0);
        assert_eq!(band(Some(10)), 9);
        assert_eq!(band(None), 4);
        assert_eq!(band(Some(0)), 4);
        assert_eq!(band(Some(99)), 4);
    }

    #[test]
    fn tenants_take_turns_whatever_their_backlog() {
        let mut queue = FairQueue::default();
        for i in 0..100 {
            queue.push("flood", format!("f{i}"));
        }
        queue.push("calm", "c0".to_owned());
        queue.push("calm", "c1".to_owned());
        let taken: Vec<String> = std::iter::from_fn(|| queue.take(|_, _| Turn::Take))
            .take(5)
            .collect();
        assert_eq!(taken, ["f0", "c0", "f1", "c1", "f2"]);
        assert_eq!(queue.len(), 97);
        assert_eq!(
            queue.ring.len(),
            1,
            "calm's queue is empty and left the ring"
        );
    }

    #[test]
    fn a_tenant_at_its_limit_is_skipped_and_keeps_its_turn_order() {
        let mut queue = FairQueue::default();
        queue.push("a", 1);
        queue.push("a", 2);
        queue.push("b", 3);
        let blocked = |tenant: &str, _: &i32| {
            if tenant == "a" {
                Turn::Skip
            } else {
                Turn::Take
            }
        };
        assert_eq!(queue.take(blocked), Some(3));
        assert_eq!(
            queue.take(blocked),
            None,
            "only a is left, and it is blocked"
        );
        assert_eq!(queue.queues["a"].len(), 2);
        assert_eq!(queue.take(|_, _| Turn::Take), Some(1));
    }

    #[test]
    fn expired_items_leave_and_the_counts_follow() {
        let mut queue = FairQueue::default();
        for i in 0..6 {
            queue.push(if i % 2 == 0 { "a" } else { "b" }, i);
        }
        let expired = queue.drain_where(|_, i| *i < 3);
        assert_eq!(expired.len(), 3);
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.drain_all().len(), 3);
        assert!(queue.is_empty());
        assert!(queue.ring.is_empty());
    }

    #[test]
    fn next_passes_over_an_item_to_the_tenants_next_one_within_the_look_ahead() {
        let mut queue = FairQueue::default();
        for i in 0..LOOK_AHEAD {
            queue.push("acme", format!("bob{i}"));
        }
        queue.push("acme", "carol-far".to_owned());
        queue.push("globex", "g".to_owned());
        let not_bob = |_: &str, item: &String| {
            if item.starts_with("bob") {
                Turn::Next
            } else {
                Turn::Take
            }
        };
        // Carol stands behind more of bob's items than a take looks at: globex goes.
        assert_eq!(queue.take(not_bob).as_deref(), Some("g"));
        assert_eq!(queue.take(|_, _| Turn::Take).as_deref(), Some("bob0"));
        // Now within reach, from the middle of the queue; the order of the rest holds.
        assert_eq!(queue.take(not_bob).as_deref(), Some("carol-far"));
        assert_eq!(queue.take(|_, _| Turn::Take).as_deref(), Some("bob1"));
        assert_eq!(queue.len(), LOOK_AHEAD - 2);
    }
}
