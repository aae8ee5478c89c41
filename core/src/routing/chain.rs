//! Fallback chains of models (issue 18 §5): a request tries each model's instances in
//! turn, and moves to the next model's only after the previous model's failed
//! retryably (the attempt loop stops at a failure that is not retryable, as it does
//! for one model).
//!
//! The chain is `route.models`, or `route.model` followed by the `fallback_models` of
//! the configs that serve that model (first seen first, each model once). A route
//! that pins one config (`route.config_id`) has no chain. Each model is planned as if
//! the request had named it, and the candidate lists are joined in chain order; the
//! request's `route.max_attempts` counts over the whole chain.

use super::plan::{MAX_SKIPPED, NoProvider, Plan, RouteRequest, RoutingView, plan};
use crate::{ids::ConfigId, protocol::MAX_MODELS, protocol::Route};

/// The models `route` tries in turn over `instances` for `tenant`; empty when it has
/// no chain (one model or none: the plain plan applies). Only the configs the tenant
/// may use lend their `fallback_models`: a shared one or its own, never another
/// tenant's own account.
pub fn model_chain<T: RoutingView>(route: &Route, tenant: &str, instances: &[T]) -> Vec<String> {
    if route.config_id.is_some() {
        return Vec::new();
    }
    if !route.models.is_empty() {
        return route.models.clone();
    }
    let Some(first) = &route.model else {
        return Vec::new();
    };
    let mut chain = vec![first.clone()];
    for instance in instances {
        let spec = &instance.config().spec;
        if spec.model.as_deref() != Some(first.as_str())
            || super::accounts::ownership(spec.owner.as_deref(), tenant)
                == super::accounts::Ownership::Foreign
        {
            continue;
        }
        for model in &spec.fallback_models {
            if chain.len() < MAX_MODELS + 1 && !chain.contains(model) {
                chain.push(model.clone());
            }
        }
    }
    if chain.len() == 1 {
        return Vec::new();
    }
    chain
}

/// Plans `request`: over its chain of models when it has one ([`model_chain`]), else
/// as one model ([`plan`]).
///
/// # Errors
/// [`NoProvider`] when nothing can serve it now.
pub fn plan_route<'a, T: RoutingView>(
    request: &RouteRequest<'_>,
    instances: &'a [T],
    disabled: &[(ConfigId, &str, Option<&str>)],
    now_ms: u64,
    counter: u64,
    seed: u64,
) -> Result<Plan<'a, T>, NoProvider> {
    let chain = model_chain(request.route, request.tenant, instances);
    if chain.is_empty() {
        plan(request, instances, disabled, now_ms, counter, seed)
    } else {
        plan_chain(request, &chain, instances, disabled, now_ms, counter, seed)
    }
}

/// Plans `request` for each model of `chain` in turn and joins the candidates (each
/// instance once). The instances left out are those of every model's plan that no
/// model's plan took. When no model has a candidate, the first model's reason.
///
/// # Errors
/// [`NoProvider`] when no model of the chain can be served now.
pub fn plan_chain<'a, T: RoutingView>(
    request: &RouteRequest<'_>,
    chain: &[String],
    instances: &'a [T],
    disabled: &[(ConfigId, &str, Option<&str>)],
    now_ms: u64,
    counter: u64,
    seed: u64,
) -> Result<Plan<'a, T>, NoProvider> {
    let mut joined: Option<Plan<'a, T>> = None;
    let mut skipped = Vec::new();
    let mut first_error = None;
    for model in chain {
        let route = Route {
            model: Some(model.clone()),
            models: Vec::new(),
            ..request.route.clone()
        };
        let one = RouteRequest {
            route: &route,
            ..*request
        };
        match plan(&one, instances, disabled, now_ms, counter, seed) {
            Ok(found) => {
                skipped.extend(found.skipped);
                match &mut joined {
                    None => {
                        joined = Some(Plan {
                            candidates: found.candidates,
                            skipped: Vec::new(),
                            strategy: found.strategy,
                        });
                    }
                    Some(plan) => {
                        for candidate in found.candidates {
                            let id = candidate.config().id;
                            if !plan.candidates.iter().any(|c| c.config().id == id) {
                                plan.candidates.push(candidate);
                            }
                        }
                    }
                }
            }
            Err(NoProvider::None {
                message,
                skipped: left_out,
            }) => {
                skipped.extend(left_out);
                first_error.get_or_insert(message);
            }
            Err(error @ NoProvider::UnknownConfig(_)) => return Err(error),
        }
    }
    // What one model's plan left out (another model's instances among them) is worth
    // reporting only if no model's plan took it; each instance once.
    let taken: Vec<ConfigId> = joined
        .as_ref()
        .map(|p| p.candidates.iter().map(|c| c.config().id).collect())
        .unwrap_or_default();
    let mut reported: Vec<ConfigId> = Vec::new();
    skipped.retain(|s| {
        let keep = !taken.contains(&s.config_id) && !reported.contains(&s.config_id);
        if keep {
            reported.push(s.config_id);
        }
        keep
    });
    skipped.truncate(MAX_SKIPPED);
    match joined {
        Some(mut plan) => {
            plan.skipped = skipped;
            Ok(plan)
        }
        None => Err(NoProvider::None {
            message: first_error.unwrap_or_else(|| "no model of route.models is served".into()),
            skipped,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        kind::Kind,
        routing::{
            OwnAccounts,
            plan::tests_support::{Fake, fake},
        },
    };

    fn route(json: serde_json::Value) -> Route {
        serde_json::from_value(json).unwrap()
    }

    fn request(route: &Route) -> RouteRequest<'_> {
        RouteRequest {
            kind: Kind::TextGenerate,
            route,
            size: None,
            n: 1,
            estimated_tokens: 10,
            tenant: "acme",
            own_accounts: OwnAccounts::Prefer,
            carried: Default::default(),
        }
    }

    fn pool() -> Vec<Fake> {
        vec![
            fake(
                1,
                serde_json::json!({"model": "big", "priority": 5,
                                        "fallback_models": ["small", "tiny"]}),
            ),
            fake(2, serde_json::json!({"model": "small", "priority": 9})),
            fake(3, serde_json::json!({"model": "big", "priority": 1})),
            fake(4, serde_json::json!({"model": "tiny"})),
            fake(5, serde_json::json!({"model": "other"})),
        ]
    }

    fn ids(plan: &Plan<'_, Fake>) -> Vec<i64> {
        plan.candidates.iter().map(|c| c.config().id.0).collect()
    }

    #[test]
    fn route_models_are_tried_model_by_model_in_order() {
        let pool = pool();
        let r = route(serde_json::json!({"models": ["small", "big"]}));
        let chain = model_chain(&r, "acme", &pool);
        assert_eq!(chain, ["small", "big"]);
        let plan = plan_chain(&request(&r), &chain, &pool, &[], 0, 0, 1).unwrap();
        // small's instance first, then big's by priority; other models' nowhere.
        assert_eq!(ids(&plan), [2, 1, 3]);
        assert!(
            plan.skipped
                .iter()
                .all(|s| s.config_id.0 == 4 || s.config_id.0 == 5)
        );
    }

    #[test]
    fn a_config_level_chain_follows_the_requested_model() {
        let pool = pool();
        let r = route(serde_json::json!({"model": "big"}));
        let chain = model_chain(&r, "acme", &pool);
        assert_eq!(chain, ["big", "small", "tiny"]);
        let plan = plan_chain(&request(&r), &chain, &pool, &[], 0, 0, 1).unwrap();
        assert_eq!(ids(&plan), [1, 3, 2, 4]);
        // A model without a chain, no model, or a pinned config: no chain.
        assert!(
            model_chain(&route(serde_json::json!({"model": "small"})), "acme", &pool).is_empty()
        );
        assert!(model_chain(&route(serde_json::json!({})), "acme", &pool).is_empty());
        let pinned = route(serde_json::json!({"models": ["small", "big"], "config_id": 2}));
        assert!(model_chain(&pinned, "acme", &pool).is_empty());
    }

    #[test]
    fn another_tenants_own_account_lends_no_chain() {
        let pool = vec![
            fake(
                1,
                serde_json::json!({"model": "big", "owner": "globex",
                                        "fallback_models": ["pricey"]}),
            ),
            fake(2, serde_json::json!({"model": "big"})),
            fake(3, serde_json::json!({"model": "pricey"})),
        ];
        let r = route(serde_json::json!({"model": "big"}));
        assert!(model_chain(&r, "acme", &pool).is_empty());
        assert_eq!(model_chain(&r, "globex", &pool), ["big", "pricey"]);
    }

    #[test]
    fn a_chain_of_models_nothing_serves_names_the_first() {
        let pool = pool();
        let r = route(serde_json::json!({"models": ["gone", "missing"]}));
        let chain = model_chain(&r, "acme", &pool);
        let Err(NoProvider::None { message, .. }) =
            plan_chain(&request(&r), &chain, &pool, &[], 0, 0, 1)
        else {
            panic!("planned a chain of unserved models");
        };
        assert!(message.contains("gone"), "{message}");
        // One served model is enough.
        let r = route(serde_json::json!({"models": ["gone", "tiny"]}));
        let plan = plan_chain(
            &request(&r),
            &model_chain(&r, "acme", &pool),
            &pool,
            &[],
            0,
            0,
            1,
        )
        .unwrap();
        assert_eq!(ids(&plan), [4]);
    }
}
