//! The routing decision (the seed's rules): `route.config_id` → exactly that instance;
//! `route.provider` → instances of that type; `auto` → all. Then filter by kind, model,
//! capability, breaker and cool-down, and order by `route.strategy`.

use std::cmp::Ordering;

use super::{
    accounts::{OwnAccounts, Ownership},
    rng::SplitMix64,
};
use crate::{
    ids::ConfigId,
    kind::Kind,
    protocol::{
        Carried, ConfigRef, ProviderSelector, Route, Routing, SkipReason, Skipped, Strategy,
    },
    provider::ProviderConfig,
};

/// What the router needs to know about one live instance. The runtime implements it on
/// its routing-table entries (reading the state the instance's actor publishes).
pub trait RoutingView {
    /// The instance's validated config.
    fn config(&self) -> &ProviderConfig;
    /// When its open breaker turns half-open (ms, same clock as `now_ms`), if open.
    fn breaker_open_until(&self) -> Option<u64>;
    /// When its 429 cool-down ends, if cooling down.
    fn cooling_until(&self) -> Option<u64>;
    /// Whether its actor failed too often and is no longer restarted.
    fn failed(&self) -> bool;
    /// Calls in flight now.
    fn in_flight(&self) -> u32;
    /// EWMA of observed latency, if any call finished yet.
    fn latency_ewma_ms(&self) -> Option<f64>;
}

/// The parts of a command that routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// What is asked for.
    pub kind: Kind,
    /// The route hints.
    pub route: &'a Route,
    /// Requested size, for capability and cost.
    pub size: Option<&'a str>,
    /// Images asked for.
    pub n: u32,
    /// Rough token estimate (text), for cost.
    pub estimated_tokens: u64,
    /// The requesting tenant: its own accounts are visible, other tenants' are not.
    pub tenant: &'a str,
    /// How the tenant's own accounts are used next to the shared ones.
    pub own_accounts: OwnAccounts,
    /// What the request carries besides text: only instances whose `supports` covers
    /// it can serve it (#18 §4).
    pub carried: Carried,
}

/// Candidates in the order to try, plus the instances left out.
#[derive(Debug)]
pub struct Plan<'a, T> {
    /// Instances to try, best first.
    pub candidates: Vec<&'a T>,
    /// Instances left out, with reasons (at most [`MAX_SKIPPED`]).
    pub skipped: Vec<Skipped>,
    /// The strategy used.
    pub strategy: Strategy,
}

/// Skipped instances reported per request, so events stay small with 1,000 instances.
pub const MAX_SKIPPED: usize = 64;

impl<T: RoutingView> Plan<'_, T> {
    /// The `routing` object of the terminal event.
    pub fn routing(&self) -> Routing {
        Routing {
            strategy: self.strategy,
            candidates: self.candidates.iter().map(|c| c.config().id).collect(),
            skipped: self.skipped.clone(),
        }
    }
}

/// Why no instance can serve a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoProvider {
    /// `route.config_id` names no config at all (an `invalid_request`).
    #[error("route.config_id {0} names no provider config")]
    UnknownConfig(String),
    /// Candidates exist in principle but none can serve now.
    #[error("{message}")]
    None {
        /// Says why (all disabled / breakers open / no instance serves this kind or model).
        message: String,
        /// The instances left out.
        skipped: Vec<Skipped>,
    },
}

/// Chooses and orders candidates for `request`.
///
/// `disabled` lists configs that exist but are disabled, with their owners (for clear
/// messages about `route.config_id`); `counter` drives `round_robin`; `seed` drives
/// `weighted`. Another tenant's own accounts are left out silently, as if they did not
/// exist; with [`OwnAccounts::Prefer`] the tenant's own accounts come first.
///
/// # Errors
/// [`NoProvider`] when no instance can serve the request.
pub fn plan<'a, T: RoutingView>(
    request: &RouteRequest<'_>,
    instances: &'a [T],
    disabled: &[(ConfigId, &str, Option<&str>)],
    now_ms: u64,
    counter: u64,
    seed: u64,
) -> Result<Plan<'a, T>, NoProvider> {
    let tenant = request.tenant;
    let visible =
        |owner: Option<&str>| super::accounts::ownership(owner, tenant) != Ownership::Foreign;
    let route = request.route;
    let mut candidates: Vec<&'a T> = Vec::new();
    let mut skipped = Vec::new();
    let mut reasons = ReasonCounts::default();

    if let Some(reference) = &route.config_id {
        let matches = |id: ConfigId, name: &str| match reference {
            ConfigRef::Id(want) => id.0 == *want,
            ConfigRef::Name(want) => name == want,
        };
        match instances.iter().find(|i| {
            visible(i.config().spec.owner.as_deref())
                && matches(i.config().id, &i.config().spec.name)
        }) {
            Some(instance)
                if let Some(why) = Ownership::of(&instance.config().spec, tenant)
                    .refused_by(request.own_accounts) =>
            {
                let config = instance.config();
                return Err(NoProvider::None {
                    message: format!(
                        "provider config {} '{}' cannot serve this request: {why}",
                        config.id, config.spec.name
                    ),
                    skipped: Vec::new(),
                });
            }
            Some(instance) => match skip_reason(request, instance, now_ms) {
                None => candidates.push(instance),
                Some((reason, until)) => {
                    let id = instance.config().id;
                    return Err(NoProvider::None {
                        message: format!(
                            "provider config {id} '{}' cannot serve this request: {}",
                            instance.config().spec.name,
                            describe(reason)
                        ),
                        skipped: vec![Skipped {
                            config_id: id,
                            reason,
                            until: until.map(to_time),
                        }],
                    });
                }
            },
            None => {
                return Err(
                    match disabled
                        .iter()
                        .find(|(id, name, owner)| visible(*owner) && matches(*id, name))
                    {
                        Some((id, name, _)) => NoProvider::None {
                            message: format!("provider config {id} '{name}' is disabled"),
                            skipped: vec![Skipped {
                                config_id: *id,
                                reason: SkipReason::Disabled,
                                until: None,
                            }],
                        },
                        None => NoProvider::UnknownConfig(match reference {
                            ConfigRef::Id(id) => id.to_string(),
                            ConfigRef::Name(name) => format!("'{name}'"),
                        }),
                    },
                );
            }
        }
    } else {
        let mut kept_out = 0usize;
        for instance in instances {
            let config = instance.config();
            if let ProviderSelector::Type(wanted) = route.provider
                && config.spec.provider != wanted
            {
                continue;
            }
            let ownership = Ownership::of(&config.spec, tenant);
            if ownership == Ownership::Foreign {
                continue;
            }
            if ownership.refused_by(request.own_accounts).is_some() {
                kept_out += 1;
                continue;
            }
            match skip_reason(request, instance, now_ms) {
                None => candidates.push(instance),
                Some((reason, until)) => {
                    reasons.add(reason);
                    if skipped.len() < MAX_SKIPPED {
                        skipped.push(Skipped {
                            config_id: config.id,
                            reason,
                            until: until.map(to_time),
                        });
                    }
                }
            }
        }
        if candidates.is_empty() {
            let disabled_count = match route.provider {
                ProviderSelector::Auto => disabled.iter().filter(|d| visible(d.2)).count(),
                ProviderSelector::Type(_) => 0,
            };
            let mut message = reasons.message(request, disabled_count);
            if kept_out > 0 {
                message.push_str(&format!(
                    " ({kept_out} more left out by own_accounts = {})",
                    request.own_accounts.as_str()
                ));
            }
            return Err(NoProvider::None { message, skipped });
        }
    }

    order(&mut candidates, request, counter, seed);
    if request.own_accounts == OwnAccounts::Prefer {
        // A stable sort: the strategy's order holds within own and within shared.
        candidates.sort_by_key(|c| Ownership::of(&c.config().spec, tenant) != Ownership::Own);
    }
    Ok(Plan {
        candidates,
        skipped,
        strategy: route.strategy,
    })
}

fn skip_reason<T: RoutingView>(
    request: &RouteRequest<'_>,
    instance: &T,
    now_ms: u64,
) -> Option<(SkipReason, Option<u64>)> {
    let spec = &instance.config().spec;
    if instance.failed() {
        return Some((SkipReason::Failed, None));
    }
    if !spec.serves(request.kind) {
        return Some((SkipReason::KindMismatch, None));
    }
    if let Some(model) = &request.route.model
        && spec.model.as_deref() != Some(model.as_str())
    {
        return Some((SkipReason::ModelMismatch, None));
    }
    if !can_serve_size_and_n(spec, request) || !supports_what_is_carried(spec, request.carried) {
        return Some((SkipReason::CapabilityMismatch, None));
    }
    if let Some(until) = instance.breaker_open_until()
        && now_ms < until
    {
        return Some((SkipReason::BreakerOpen, Some(until)));
    }
    if let Some(until) = instance.cooling_until()
        && now_ms < until
    {
        return Some((SkipReason::CoolingDown, Some(until)));
    }
    None
}

/// `options.max_n` and `options.sizes` (a list) narrow what an instance accepts.
fn can_serve_size_and_n(spec: &crate::provider::ProviderSpec, request: &RouteRequest<'_>) -> bool {
    if !request.kind.is_image() {
        return true;
    }
    if let Some(max_n) = spec
        .options
        .get("max_n")
        .and_then(serde_json::Value::as_u64)
        && u64::from(request.n) > max_n
    {
        return false;
    }
    if let (Some(size), Some(sizes)) = (
        request.size,
        spec.options
            .get("sizes")
            .and_then(serde_json::Value::as_array),
    ) && !sizes.iter().any(|s| s.as_str() == Some(size))
    {
        return false;
    }
    true
}

/// `supports` covers every kind of input the request carries.
fn supports_what_is_carried(spec: &crate::provider::ProviderSpec, carried: Carried) -> bool {
    let supports = spec.supports;
    (!carried.images || supports.images)
        && (!carried.files || supports.files)
        && (!carried.audio || supports.audio)
        && (!carried.video || supports.video)
}

fn to_time(ms: u64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn describe(reason: SkipReason) -> &'static str {
    match reason {
        SkipReason::BreakerOpen => "its breaker is open",
        SkipReason::CoolingDown => "it is cooling down after a 429",
        SkipReason::LimiterFull => "its rate limit is used up",
        SkipReason::KindMismatch => "it does not serve this kind",
        SkipReason::ModelMismatch => "it does not serve this model",
        SkipReason::ProviderMismatch => "it is not of the requested provider type",
        SkipReason::CapabilityMismatch => {
            "it cannot serve this size or n, or the images, files, audio or video the request carries"
        }
        SkipReason::Disabled => "it is disabled",
        SkipReason::Failed => "its actor failed and is not restarted",
    }
}

#[derive(Default)]
struct ReasonCounts {
    total: usize,
    kind: usize,
    model: usize,
    capability: usize,
    breaker: usize,
    cooling: usize,
    failed: usize,
}

impl ReasonCounts {
    fn add(&mut self, reason: SkipReason) {
        self.total += 1;
        match reason {
            SkipReason::KindMismatch => self.kind += 1,
            SkipReason::ModelMismatch => self.model += 1,
            SkipReason::CapabilityMismatch => self.capability += 1,
            SkipReason::BreakerOpen => self.breaker += 1,
            SkipReason::CoolingDown => self.cooling += 1,
            SkipReason::Failed => self.failed += 1,
            SkipReason::LimiterFull | SkipReason::ProviderMismatch | SkipReason::Disabled => {}
        }
    }

    fn message(&self, request: &RouteRequest<'_>, disabled: usize) -> String {
        let scope = match request.route.provider {
            ProviderSelector::Auto => String::new(),
            ProviderSelector::Type(t) => format!(" of type '{t}'"),
        };
        if self.total == 0 {
            return if disabled > 0 {
                format!("all {disabled} provider configs{scope} are disabled")
            } else {
                format!("no provider instance{scope} is configured and enabled")
            };
        }
        let kind = request.kind;
        if self.kind == self.total {
            return format!("no enabled instance{scope} serves {kind}");
        }
        let serving = self.total - self.kind;
        if self.model == serving {
            let model = request.route.model.as_deref().unwrap_or("?");
            return format!("no enabled instance{scope} serving {kind} serves model '{model}'");
        }
        if self.capability == serving - self.model {
            let carried = request.carried;
            if carried.is_text() {
                return format!("no instance{scope} serving {kind} accepts this size or n");
            }
            let what: Vec<&str> = [
                (carried.images, "images"),
                (carried.files, "files"),
                (carried.audio, "audio"),
                (carried.video, "video"),
            ]
            .into_iter()
            .filter_map(|(carried, name)| carried.then_some(name))
            .collect();
            return format!(
                "no instance{scope} serving {kind} supports what the request carries ({}); \
                 set `supports` on a config that does",
                what.join(", ")
            );
        }
        let mut parts = Vec::new();
        if self.breaker > 0 {
            parts.push(format!("{} with the breaker open", self.breaker));
        }
        if self.cooling > 0 {
            parts.push(format!("{} cooling down after a 429", self.cooling));
        }
        if self.failed > 0 {
            parts.push(format!("{} failed", self.failed));
        }
        format!(
            "every instance{scope} that could serve {kind} is unavailable: {}",
            parts.join(", ")
        )
    }
}

fn by_priority<T: RoutingView>(a: &&T, b: &&T) -> Ordering {
    let (a, b) = (a.config(), b.config());
    b.spec
        .priority
        .cmp(&a.spec.priority)
        .then(b.spec.weight.cmp(&a.spec.weight))
        .then(a.id.cmp(&b.id))
}

fn order<T: RoutingView>(
    candidates: &mut [&T],
    request: &RouteRequest<'_>,
    counter: u64,
    seed: u64,
) {
    match request.route.strategy {
        Strategy::Priority => candidates.sort_by(by_priority),
        Strategy::Weighted => {
            // Efraimidis–Spirakis: key = u^(1/w), largest first; weight 0 goes last.
            let mut rng = SplitMix64::new(seed);
            let mut keyed: Vec<(f64, &T)> = candidates
                .iter()
                .map(|c| {
                    let w = f64::from(c.config().spec.weight);
                    let key = if w > 0.0 {
                        rng.next_unit().powf(1.0 / w)
                    } else {
                        -1.0
                    };
                    (key, *c)
                })
                .collect();
            keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
            for (slot, (_, c)) in candidates.iter_mut().zip(keyed) {
                *slot = c;
            }
        }
        Strategy::RoundRobin => {
            candidates.sort_by_key(|c| c.config().id);
            let len = candidates.len();
            if len > 0 {
                candidates.rotate_left((counter % len as u64) as usize);
            }
        }
        Strategy::LeastBusy => sort_by_key_then_priority(candidates, |c| busyness(c)),
        Strategy::Latency => candidates.sort_by(|a, b| {
            match (a.latency_ewma_ms(), b.latency_ewma_ms()) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => x.total_cmp(&y),
            }
            .then_with(|| by_priority(a, b))
        }),
        Strategy::Cost => sort_by_key_then_priority(candidates, |c| estimated_cost(c, request)),
    }
}

/// Sorts by a key computed once per candidate (not once per comparison), ties broken
/// by priority.
fn sort_by_key_then_priority<T: RoutingView>(candidates: &mut [&T], key: impl Fn(&T) -> f64) {
    let mut keyed: Vec<(f64, &T)> = candidates.iter().map(|c| (key(c), *c)).collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| by_priority(&a.1, &b.1)));
    for (slot, (_, c)) in candidates.iter_mut().zip(keyed) {
        *slot = c;
    }
}

fn busyness<T: RoutingView>(instance: &T) -> f64 {
    f64::from(instance.in_flight())
        / f64::from(instance.config().spec.rate_limit.max_concurrency.max(1))
}

/// The request's estimated cost on `instance`, from its cost table.
pub fn estimated_cost<T: RoutingView>(instance: &T, request: &RouteRequest<'_>) -> f64 {
    let cost = &instance.config().spec.cost;
    if request.kind.is_image() {
        cost.estimate(request.n, request.size, 0, 0)
    } else {
        cost.estimate(0, None, request.estimated_tokens, request.estimated_tokens)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod tests_support;
