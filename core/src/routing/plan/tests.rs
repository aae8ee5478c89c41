use chrono::{TimeZone, Utc};
use proptest::prelude::*;

use super::{
    tests_support::{Fake, fake},
    *,
};
use crate::provider::ProviderType;

fn route(json: serde_json::Value) -> Route {
    serde_json::from_value(json).unwrap()
}

fn request(route: &Route) -> RouteRequest<'_> {
    RouteRequest {
        kind: Kind::ImageGenerate,
        route,
        size: Some("1024x1024"),
        n: 1,
        estimated_tokens: 0,
        tenant: "acme",
        own_accounts: OwnAccounts::Prefer,
        carried: Default::default(),
    }
}

fn ids<T: RoutingView>(plan: &Plan<'_, T>) -> Vec<i64> {
    plan.candidates.iter().map(|c| c.config().id.0).collect()
}

fn pool() -> Vec<Fake> {
    vec![
        fake(
            1,
            serde_json::json!({"priority": 10, "weight": 1, "cost": {"per_image": {"default": 0.04}}}),
        ),
        fake(
            2,
            serde_json::json!({"priority": 30, "weight": 1, "cost": {"per_image": {"default": 0.08}}}),
        ),
        fake(
            3,
            serde_json::json!({"priority": 30, "weight": 5, "cost": {"per_image": {"default": 0.01}}}),
        ),
        fake(
            4,
            serde_json::json!({"priority": 20, "weight": 1, "cost": {"per_image": {"1024x1024": 0.02, "default": 0.5}}}),
        ),
    ]
}

#[test]
fn priority_orders_higher_first_and_weight_breaks_ties() {
    let instances = pool();
    let r = route(serde_json::json!({}));
    let plan = plan(&request(&r), &instances, &[], 0, 0, 0).unwrap();
    assert_eq!(ids(&plan), [3, 2, 4, 1]);
    assert!(plan.skipped.is_empty());
}

#[test]
fn cost_orders_cheapest_for_this_request_first() {
    let instances = pool();
    let r = route(serde_json::json!({"strategy": "cost"}));
    let plan = plan(&request(&r), &instances, &[], 0, 0, 0).unwrap();
    assert_eq!(ids(&plan), [3, 4, 1, 2]);
}

#[test]
fn round_robin_rotates() {
    let instances = pool();
    let r = route(serde_json::json!({"strategy": "round_robin"}));
    let firsts: Vec<i64> = (0..5)
        .map(|counter| ids(&plan(&request(&r), &instances, &[], 0, counter, 0).unwrap())[0])
        .collect();
    assert_eq!(firsts, [1, 2, 3, 4, 1]);
}

#[test]
fn least_busy_and_latency_use_live_state() {
    let mut instances = pool();
    instances[0].in_flight = 0;
    instances[1].in_flight = 8;
    instances[2].in_flight = 4;
    instances[3].in_flight = 2;
    let r = route(serde_json::json!({"strategy": "least_busy"}));
    assert_eq!(
        ids(&plan(&request(&r), &instances, &[], 0, 0, 0).unwrap()),
        [1, 4, 3, 2]
    );

    instances[0].latency = Some(50.0);
    instances[1].latency = Some(10.0);
    instances[2].latency = None;
    instances[3].latency = Some(30.0);
    let r = route(serde_json::json!({"strategy": "latency"}));
    assert_eq!(
        ids(&plan(&request(&r), &instances, &[], 0, 0, 0).unwrap()),
        [3, 2, 4, 1],
        "unknown latency is tried first"
    );
}

#[test]
fn weighted_follows_weights() {
    let instances = vec![
        fake(1, serde_json::json!({"weight": 1})),
        fake(2, serde_json::json!({"weight": 9})),
        fake(3, serde_json::json!({"weight": 0})),
    ];
    let r = route(serde_json::json!({"strategy": "weighted"}));
    let mut first_is_2 = 0;
    for seed in 0..2000 {
        let plan = plan(&request(&r), &instances, &[], 0, 0, seed).unwrap();
        assert_eq!(ids(&plan)[2], 3, "weight 0 is tried last");
        first_is_2 += usize::from(ids(&plan)[0] == 2);
    }
    assert!(
        (1650..1950).contains(&first_is_2),
        "{first_is_2} of 2000, expected ~1800"
    );
}

#[test]
fn unavailable_instances_are_skipped_with_reasons() {
    let mut instances = pool();
    instances.push(fake(5, serde_json::json!({"kinds": ["text.generate"]})));
    instances.push(fake(6, serde_json::json!({"model": "other"})));
    instances[0].open_until = Some(1_000);
    instances[1].cooling_until = Some(2_000);
    instances[2].failed = true;
    let r = route(serde_json::json!({}));
    let plan = plan(&request(&r), &instances, &[], 500, 0, 0).unwrap();
    assert_eq!(ids(&plan), [4, 6]);
    let reasons: Vec<(i64, SkipReason)> = plan
        .skipped
        .iter()
        .map(|s| (s.config_id.0, s.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            (1, SkipReason::BreakerOpen),
            (2, SkipReason::CoolingDown),
            (3, SkipReason::Failed),
            (5, SkipReason::KindMismatch),
        ]
    );
    assert_eq!(
        plan.skipped[0].until,
        Some(Utc.timestamp_millis_opt(1_000).unwrap())
    );
    // Once the wait is over the instance is a candidate again.
    let later = super::plan(&request(&r), &instances, &[], 1_000, 0, 0).unwrap();
    assert!(ids(&later).contains(&1));
}

#[test]
fn model_and_provider_hints_filter() {
    let mut instances = pool();
    instances.push(fake(7, serde_json::json!({"provider": "stability", "api_key": "sk-0123456789abcdef", "model": "sdxl"})));
    let r = route(serde_json::json!({"provider": "stability"}));
    assert_eq!(
        ids(&plan(&request(&r), &instances, &[], 0, 0, 0).unwrap()),
        [7]
    );
    let r = route(serde_json::json!({"model": "sdxl"}));
    let p = plan(&request(&r), &instances, &[], 0, 0, 0).unwrap();
    assert_eq!(ids(&p), [7]);
    assert!(
        p.skipped
            .iter()
            .all(|s| s.reason == SkipReason::ModelMismatch)
    );
}

#[test]
fn size_and_n_limits_filter_before_the_call() {
    let instances = vec![
        fake(1, serde_json::json!({"options": {}})),
        fake(2, serde_json::json!({"priority": 5})),
    ];
    let mut with_limits = fake(3, serde_json::json!({"priority": 9}));
    with_limits.config.spec.options =
        serde_json::from_value(serde_json::json!({"max_n": 1, "sizes": ["512x512"]})).unwrap();
    let mut all = instances;
    all.push(with_limits);
    let r = route(serde_json::json!({}));
    let p = plan(&request(&r), &all, &[], 0, 0, 0).unwrap();
    assert_eq!(ids(&p), [2, 1]);
    assert_eq!(p.skipped[0].reason, SkipReason::CapabilityMismatch);
}

#[test]
fn config_id_picks_exactly_one_or_explains() {
    let mut instances = pool();
    let r = route(serde_json::json!({"config_id": 4}));
    assert_eq!(
        ids(&plan(&request(&r), &instances, &[], 0, 0, 0).unwrap()),
        [4]
    );
    let r = route(serde_json::json!({"config_id": "i2"}));
    assert_eq!(
        ids(&plan(&request(&r), &instances, &[], 0, 0, 0).unwrap()),
        [2]
    );

    let r = route(serde_json::json!({"config_id": 9}));
    let err = plan(
        &request(&r),
        &instances,
        &[(ConfigId(9), "old", None)],
        0,
        0,
        0,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "provider config 9 'old' is disabled");
    let r = route(serde_json::json!({"config_id": "nope"}));
    let err = plan(&request(&r), &instances, &[], 0, 0, 0).unwrap_err();
    assert_eq!(err, NoProvider::UnknownConfig("'nope'".into()));

    instances[3].open_until = Some(100);
    let r = route(serde_json::json!({"config_id": 4}));
    let err = plan(&request(&r), &instances, &[], 0, 0, 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "provider config 4 'i4' cannot serve this request: its breaker is open"
    );
}

#[test]
fn no_provider_messages_say_why() {
    let message =
        |instances: &[Fake], disabled: &[(ConfigId, &str, Option<&str>)], r: &Route, kind: Kind| {
            let mut req = request(r);
            req.kind = kind;
            plan(&req, instances, disabled, 0, 0, 0)
                .unwrap_err()
                .to_string()
        };
    let r = route(serde_json::json!({}));
    assert_eq!(
        message(
            &[],
            &[(ConfigId(1), "a", None), (ConfigId(2), "b", None)],
            &r,
            Kind::ImageGenerate
        ),
        "all 2 provider configs are disabled"
    );
    assert_eq!(
        message(&[], &[], &r, Kind::ImageGenerate),
        "no provider instance is configured and enabled"
    );
    let text_only = [fake(1, serde_json::json!({"kinds": ["text.generate"]}))];
    assert_eq!(
        message(&text_only, &[], &r, Kind::ImageEdit),
        "no enabled instance serves image.edit"
    );
    let mut open = pool();
    for (i, instance) in open.iter_mut().enumerate() {
        if i < 3 {
            instance.open_until = Some(10);
        } else {
            instance.cooling_until = Some(10);
        }
    }
    assert_eq!(
        message(&open, &[], &r, Kind::ImageGenerate),
        "every instance that could serve image.generate is unavailable: 3 with the breaker open, 1 cooling down after a 429"
    );
    let r = route(serde_json::json!({"model": "m-x"}));
    assert_eq!(
        message(&pool(), &[], &r, Kind::ImageGenerate),
        "no enabled instance serving image.generate serves model 'm-x'"
    );
    let r = route(serde_json::json!({"provider": "openai"}));
    assert_eq!(
        message(&pool(), &[], &r, Kind::ImageGenerate),
        "no provider instance of type 'openai' is configured and enabled"
    );
    let _ = ProviderType::Openai;
}

proptest! {
    #[test]
    fn every_instance_is_a_candidate_or_skipped_once(
        states in proptest::collection::vec((0u8..4, -5i64..5, 0i64..4, 0u32..10), 1..40),
        strategy in 0usize..6,
        now in 0u64..100,
        counter in 0u64..1000,
        seed in 0u64..1000,
    ) {
        let instances: Vec<Fake> = states
            .iter()
            .enumerate()
            .map(|(i, (state, priority, weight, in_flight))| {
                let mut f = fake(i as i64 + 1, serde_json::json!({"priority": priority, "weight": weight}));
                match state {
                    1 => f.open_until = Some(50),
                    2 => f.cooling_until = Some(50),
                    3 => f.failed = true,
                    _ => {}
                }
                f.in_flight = *in_flight;
                f
            })
            .collect();
        let strategies = ["priority", "weighted", "round_robin", "least_busy", "latency", "cost"];
        let r = route(serde_json::json!({"strategy": strategies[strategy]}));
        match plan(&request(&r), &instances, &[], now, counter, seed) {
            Ok(p) => {
                let mut seen: Vec<i64> = ids(&p);
                seen.extend(p.skipped.iter().map(|s| s.config_id.0));
                seen.sort_unstable();
                let all: Vec<i64> = (1..=instances.len() as i64).collect();
                prop_assert_eq!(seen, all);
                for c in &p.candidates {
                    prop_assert!(!c.failed);
                    prop_assert!(c.open_until.is_none_or(|u| now >= u));
                    prop_assert!(c.cooling_until.is_none_or(|u| now >= u));
                }
                if strategies[strategy] == "priority" {
                    let priorities: Vec<i32> = p.candidates.iter().map(|c| c.config.spec.priority).collect();
                    prop_assert!(priorities.windows(2).all(|w| w[0] >= w[1]));
                }
            }
            Err(NoProvider::None { skipped, .. }) => prop_assert_eq!(skipped.len(), instances.len()),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}

#[test]
fn own_accounts_serve_only_their_tenant_and_come_first_when_preferred() {
    let instances = vec![
        fake(1, serde_json::json!({"priority": 10})),
        fake(2, serde_json::json!({"owner": "acme"})),
        fake(3, serde_json::json!({"owner": "globex", "priority": 20})),
    ];
    let r = route(serde_json::json!({}));
    let mut req = request(&r);
    assert_eq!(ids(&plan(&req, &instances, &[], 0, 0, 0).unwrap()), [2, 1]);
    req.own_accounts = OwnAccounts::Only;
    assert_eq!(ids(&plan(&req, &instances, &[], 0, 0, 0).unwrap()), [2]);
    req.own_accounts = OwnAccounts::Never;
    assert_eq!(ids(&plan(&req, &instances, &[], 0, 0, 0).unwrap()), [1]);

    // Another tenant's account is not there at all: not used, not reported, and not
    // found by id or by name (nor as a disabled one).
    req.tenant = "initech";
    req.own_accounts = OwnAccounts::Prefer;
    let plan_ = plan(&req, &instances, &[], 0, 0, 0).unwrap();
    assert_eq!(ids(&plan_), [1]);
    assert!(plan_.skipped.is_empty());
    for reference in [
        serde_json::json!(3),
        serde_json::json!("i3"),
        serde_json::json!(9),
    ] {
        let r = route(serde_json::json!({"config_id": reference}));
        let mut req = request(&r);
        req.tenant = "initech";
        let err = plan(
            &req,
            &instances,
            &[(ConfigId(9), "gone", Some("globex"))],
            0,
            0,
            0,
        )
        .unwrap_err();
        assert!(matches!(err, NoProvider::UnknownConfig(_)), "{err:?}");
    }

    // A tenant that uses only its own accounts and has none gets a clear answer.
    req.own_accounts = OwnAccounts::Only;
    let err = plan(&req, &instances, &[], 0, 0, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("left out by own_accounts = only"), "{err}");
    // Naming a shared account with `only` says why it cannot serve.
    let r = route(serde_json::json!({"config_id": 1}));
    let mut req = request(&r);
    req.own_accounts = OwnAccounts::Only;
    let err = plan(&req, &instances, &[], 0, 0, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("shared account"), "{err}");
}

#[test]
fn only_instances_supporting_what_a_request_carries_are_candidates() {
    use crate::protocol::Carried;
    let instances = vec![
        fake(
            1,
            serde_json::json!({"kinds": ["text.generate"], "priority": 100}),
        ),
        fake(
            2,
            serde_json::json!({"kinds": ["text.generate"], "supports": {"images": true}}),
        ),
        fake(
            3,
            serde_json::json!({"kinds": ["text.generate"], "supports": {"images": true, "audio": true}}),
        ),
    ];
    let r = route(serde_json::json!({}));
    let text = RouteRequest {
        kind: Kind::TextGenerate,
        ..request(&r)
    };
    assert_eq!(
        ids(&plan(&text, &instances, &[], 0, 0, 0).unwrap()),
        [1, 2, 3]
    );
    let images = RouteRequest {
        carried: Carried {
            images: true,
            ..Carried::default()
        },
        ..text
    };
    let planned = plan(&images, &instances, &[], 0, 0, 0).unwrap();
    assert_eq!(ids(&planned), [2, 3]);
    assert_eq!(planned.skipped[0].reason, SkipReason::CapabilityMismatch);
    let audio_and_video = RouteRequest {
        carried: Carried {
            audio: true,
            video: true,
            ..Carried::default()
        },
        ..text
    };
    match plan(&audio_and_video, &instances, &[], 0, 0, 0) {
        Err(NoProvider::None { message, skipped }) => {
            assert!(message.contains("audio, video"), "{message}");
            assert!(
                skipped
                    .iter()
                    .all(|s| s.reason == SkipReason::CapabilityMismatch)
            );
        }
        other => panic!("{other:?}"),
    }
}
