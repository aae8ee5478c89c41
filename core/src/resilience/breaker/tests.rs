use proptest::prelude::*;

use super::*;

fn settings() -> BreakerSettings {
    BreakerSettings {
        window: 10,
        min_calls: 4,
        failure_rate: 0.5,
        consecutive_failures: 3,
        slow_call_ms: 1_000,
        slow_call_rate: 1.0,
        open_ms: 100,
        max_open_ms: 800,
        half_open_calls: 2,
    }
}

fn call(b: &mut Breaker, now: u64, outcome: CallOutcome) {
    b.try_acquire(now).expect("admitted");
    b.record(now, outcome, 10);
}

#[test]
fn consecutive_failures_open_the_breaker() {
    let mut b = Breaker::new(settings());
    call(&mut b, 0, CallOutcome::Failure);
    call(&mut b, 0, CallOutcome::Failure);
    assert_eq!(b.state(0), BreakerState::Closed);
    call(&mut b, 0, CallOutcome::Failure);
    assert_eq!(b.state(0), BreakerState::Open { until_ms: 100 });
    assert_eq!(b.try_acquire(50), Err(BreakerRejected { until_ms: 100 }));
}

#[test]
fn failure_rate_over_the_window_opens_the_breaker() {
    let mut b = Breaker::new(settings());
    for outcome in [
        CallOutcome::Success,
        CallOutcome::Failure,
        CallOutcome::Success,
    ] {
        call(&mut b, 0, outcome);
    }
    assert_eq!(b.state(0), BreakerState::Closed, "below min_calls");
    call(&mut b, 0, CallOutcome::Failure);
    assert_eq!(
        b.state(0),
        BreakerState::Open { until_ms: 100 },
        "2 of 4 failed"
    );
}

#[test]
fn slow_calls_open_the_breaker() {
    let mut b = Breaker::new(settings());
    for _ in 0..4 {
        b.try_acquire(0).unwrap();
        b.record(0, CallOutcome::Success, 5_000);
    }
    assert!(matches!(b.state(0), BreakerState::Open { .. }));
}

#[test]
fn ignored_outcomes_do_not_count() {
    let mut b = Breaker::new(settings());
    for _ in 0..20 {
        call(&mut b, 0, CallOutcome::Ignored);
    }
    assert_eq!(b.state(0), BreakerState::Closed);
}

#[test]
fn half_open_admits_only_probe_calls_then_closes() {
    let mut b = Breaker::new(settings());
    for _ in 0..3 {
        call(&mut b, 0, CallOutcome::Failure);
    }
    assert_eq!(b.state(100), BreakerState::HalfOpen);
    b.try_acquire(100).unwrap();
    b.try_acquire(100).unwrap();
    assert_eq!(b.try_acquire(100), Err(BreakerRejected { until_ms: 100 }));
    b.record(101, CallOutcome::Success, 1);
    assert_eq!(b.state(101), BreakerState::HalfOpen);
    b.record(102, CallOutcome::Success, 1);
    assert_eq!(b.state(102), BreakerState::Closed);
    assert_eq!(b.trips(), 0);
}

#[test]
fn a_failed_probe_reopens_for_twice_as_long_up_to_the_cap() {
    let mut b = Breaker::new(settings());
    for _ in 0..3 {
        call(&mut b, 0, CallOutcome::Failure);
    }
    let mut now = 0;
    let mut waits = vec![];
    for _ in 0..5 {
        let BreakerState::Open { until_ms } = b.state(now) else {
            panic!("open expected");
        };
        waits.push(until_ms - now);
        now = until_ms;
        b.try_acquire(now).unwrap();
        b.record(now, CallOutcome::Failure, 1);
    }
    assert_eq!(waits, [100, 200, 400, 800, 800]);
}

#[test]
fn an_ignored_probe_frees_its_slot() {
    let mut b = Breaker::new(BreakerSettings {
        half_open_calls: 1,
        ..settings()
    });
    for _ in 0..3 {
        call(&mut b, 0, CallOutcome::Failure);
    }
    b.try_acquire(100).unwrap();
    assert!(b.try_acquire(100).is_err());
    b.record(100, CallOutcome::Ignored, 1);
    assert!(b.try_acquire(100).is_ok());
}

fn outcome_strategy() -> impl Strategy<Value = (u64, u8, u64)> {
    // (time step, outcome selector, duration)
    (0u64..300, 0u8..3, 0u64..2_000)
}

proptest! {
    #[test]
    fn never_more_probes_than_allowed(steps in proptest::collection::vec(outcome_strategy(), 1..200)) {
        let s = settings();
        let mut b = Breaker::new(s);
        let mut now = 0;
        let mut outstanding: Vec<u64> = Vec::new();
        for (step, selector, duration) in steps {
            now += step;
            let before = b.state(now);
            if b.try_acquire(now).is_ok() {
                outstanding.push(now);
            } else {
                prop_assert!(!matches!(before, BreakerState::Closed), "a closed breaker never refuses");
            }
            // Count probes in flight while half-open.
            if let State::HalfOpen { admitted, .. } = b.state {
                prop_assert!(admitted <= s.half_open_calls);
            }
            if selector < 2 && !outstanding.is_empty() {
                outstanding.pop();
                let outcome = match selector { 0 => CallOutcome::Success, _ => CallOutcome::Failure };
                b.record(now, outcome, duration);
            }
        }
    }

    #[test]
    fn open_wait_stays_within_bounds(failures in 3usize..40) {
        let s = settings();
        let mut b = Breaker::new(s);
        let mut now = 0;
        for _ in 0..failures {
            if let BreakerState::Open { until_ms } = b.state(now) {
                let wait = until_ms - now;
                prop_assert!(wait >= s.open_ms && wait <= s.max_open_ms);
                now = until_ms;
            }
            if b.try_acquire(now).is_ok() {
                b.record(now, CallOutcome::Failure, 1);
            }
        }
    }

    #[test]
    fn successes_alone_never_open(n in 1usize..500, durations in proptest::collection::vec(0u64..999, 500)) {
        let mut b = Breaker::new(settings());
        for d in durations.into_iter().take(n) {
            b.try_acquire(0).unwrap();
            b.record(0, CallOutcome::Success, d);
        }
        prop_assert_eq!(b.state(0), BreakerState::Closed);
    }
}
