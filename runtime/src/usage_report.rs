//! Usage reports (#16 §8): a tenant's usage (or one user's) in day, week or month
//! buckets, grouped by user, provider type, model, kind and config, with its failed
//! requests counted per kind and error code. The store answers per UTC day; this folds
//! the days into the buckets asked for (weeks start on Monday, months on the 1st).

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use crate::store::{FailureDayRow, QueryError, ReportScope, Store, UsageDayRow, parse_day};

/// How long a bucket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// A UTC day.
    Day,
    /// A week from Monday (UTC).
    Week,
    /// A calendar month (UTC).
    Month,
}

impl Bucket {
    /// `day`, `week` or `month`.
    ///
    /// # Errors
    /// The name, when it is none of them.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            "month" => Ok(Self::Month),
            other => Err(format!("'{other}' is not a bucket (day, week or month)")),
        }
    }

    /// The first day of the bucket `day` falls in.
    pub fn start(self, day: NaiveDate) -> NaiveDate {
        match self {
            Self::Day => day,
            Self::Week => day - chrono::Days::new(u64::from(day.weekday().num_days_from_monday())),
            Self::Month => day.with_day(1).unwrap_or(day),
        }
    }
}

/// One group's usage in a bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageLine {
    /// The end user (absent unless grouped by user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Provider type.
    pub provider: String,
    /// Model.
    pub model: Option<String>,
    /// Kind.
    pub kind: String,
    /// The provider config (instance) that served.
    pub config_id: Option<i64>,
    /// What it used.
    #[serde(flatten)]
    pub usage: Sums,
}

/// Failed requests of one kind and error code in a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureLine {
    /// The end user (absent unless grouped by user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Kind.
    pub kind: String,
    /// The protocol's error code.
    pub error_code: Option<String>,
    /// Failed requests.
    pub failures: i64,
}

/// Sums of usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sums {
    /// Requests that used a provider.
    pub requests: i64,
    /// Images made.
    pub images: i64,
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
    /// Estimated cost.
    pub cost_usd: f64,
    /// Of `requests`, those charged to the tenant's quotas: all but those its own
    /// provider accounts served.
    pub charged_requests: i64,
    /// Of `cost_usd`, what was charged to the tenant's quotas.
    pub charged_cost_usd: f64,
}

impl Sums {
    fn add(&mut self, other: &Sums) {
        self.requests += other.requests;
        self.images += other.images;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_usd += other.cost_usd;
        self.charged_requests += other.charged_requests;
        self.charged_cost_usd += other.charged_cost_usd;
    }
}

/// Sums of a bucket or a report: the usage and the failures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Totals {
    /// What was used.
    #[serde(flatten)]
    pub usage: Sums,
    /// Failed requests.
    pub failures: i64,
}

/// One bucket of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketReport {
    /// Its first day (UTC).
    pub start: NaiveDate,
    /// Usage per group.
    pub groups: Vec<UsageLine>,
    /// Failures per kind and error code.
    pub failures: Vec<FailureLine>,
    /// Its sums.
    pub total: Totals,
}

/// A usage report: buckets with something in them, oldest first, and the sums.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageReport {
    /// The bucket length.
    pub bucket: Bucket,
    /// The buckets.
    pub buckets: Vec<BucketReport>,
    /// The sums of every bucket.
    pub total: Totals,
}

type GroupKey = (Option<String>, String, Option<String>, String, Option<i64>);
type FailureKey = (Option<String>, String, Option<String>);

#[derive(Default)]
struct Building {
    groups: BTreeMap<GroupKey, Sums>,
    failures: BTreeMap<FailureKey, i64>,
}

/// Folds per-day rows into `bucket`s.
pub fn fold(bucket: Bucket, usage: Vec<UsageDayRow>, failures: Vec<FailureDayRow>) -> UsageReport {
    let mut buckets: BTreeMap<NaiveDate, Building> = BTreeMap::new();
    for row in usage {
        let start = bucket.start(parse_day(&row.day));
        let sums = Sums {
            requests: row.requests,
            images: row.images,
            input_tokens: row.input_tokens,
            output_tokens: row.output_tokens,
            cost_usd: row.cost_usd,
            charged_requests: row.charged_requests,
            charged_cost_usd: row.charged_cost_usd,
        };
        let key = (row.user, row.provider, row.model, row.kind, row.config_id);
        buckets
            .entry(start)
            .or_default()
            .groups
            .entry(key)
            .or_default()
            .add(&sums);
    }
    for row in failures {
        let start = bucket.start(parse_day(&row.day));
        let key = (row.user, row.kind, row.error_code);
        *buckets
            .entry(start)
            .or_default()
            .failures
            .entry(key)
            .or_default() += row.failures;
    }
    let mut total = Totals::default();
    let buckets = buckets
        .into_iter()
        .map(|(start, building)| {
            let mut sums = Totals::default();
            let groups = building
                .groups
                .into_iter()
                .map(|((user, provider, model, kind, config_id), usage)| {
                    sums.usage.add(&usage);
                    UsageLine {
                        user,
                        provider,
                        model,
                        kind,
                        config_id,
                        usage,
                    }
                })
                .collect();
            let failures = building
                .failures
                .into_iter()
                .map(|((user, kind, error_code), failures)| {
                    sums.failures += failures;
                    FailureLine {
                        user,
                        kind,
                        error_code,
                        failures,
                    }
                })
                .collect();
            total.usage.add(&sums.usage);
            total.failures += sums.failures;
            BucketReport {
                start,
                groups,
                failures,
                total: sums,
            }
        })
        .collect();
    UsageReport {
        bucket,
        buckets,
        total,
    }
}

/// The report of `scope` in `bucket`s, from the store.
///
/// # Errors
/// The store's.
pub async fn report(
    store: &Store,
    scope: &ReportScope<'_>,
    bucket: Bucket,
) -> Result<UsageReport, QueryError> {
    let usage = store.usage_by_day(scope).await?;
    let failures = store.failures_by_day(scope).await?;
    Ok(fold(bucket, usage, failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: &str) -> NaiveDate {
        parse_day(d)
    }

    #[test]
    fn buckets_start_on_mondays_and_firsts() {
        // 2026-12-07 is a Monday.
        assert_eq!(Bucket::Week.start(day("2026-12-13")), day("2026-12-07"));
        assert_eq!(Bucket::Week.start(day("2026-12-07")), day("2026-12-07"));
        assert_eq!(Bucket::Week.start(day("2026-12-06")), day("2026-11-30"));
        assert_eq!(Bucket::Month.start(day("2026-12-31")), day("2026-12-01"));
        assert_eq!(Bucket::Day.start(day("2026-12-31")), day("2026-12-31"));
        assert!(Bucket::parse("year").unwrap_err().contains("year"));
    }

    fn usage(d: &str, model: &str, requests: i64, cost_usd: f64) -> UsageDayRow {
        UsageDayRow {
            day: d.to_owned(),
            user: None,
            provider: "mock".to_owned(),
            model: Some(model.to_owned()),
            kind: "image.generate".to_owned(),
            config_id: Some(1),
            requests,
            images: requests * 2,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd,
            charged_requests: requests,
            charged_cost_usd: cost_usd,
        }
    }

    #[test]
    fn days_fold_into_weeks_per_group_with_failures_and_totals() {
        let rows = vec![
            usage("2026-12-07", "a", 1, 0.5),
            usage("2026-12-08", "a", 2, 1.0),
            usage("2026-12-08", "b", 1, 0.25),
            usage("2026-12-14", "a", 4, 2.0),
        ];
        let failures = vec![
            FailureDayRow {
                day: "2026-12-09".to_owned(),
                user: None,
                kind: "image.generate".to_owned(),
                error_code: Some("timeout".to_owned()),
                failures: 3,
            },
            FailureDayRow {
                day: "2026-12-10".to_owned(),
                user: None,
                kind: "image.generate".to_owned(),
                error_code: Some("timeout".to_owned()),
                failures: 1,
            },
        ];
        let report = fold(Bucket::Week, rows, failures);
        assert_eq!(report.buckets.len(), 2);
        let first = &report.buckets[0];
        assert_eq!(first.start, day("2026-12-07"));
        assert_eq!(first.groups.len(), 2, "a and b");
        assert_eq!(first.groups[0].usage.requests, 3);
        assert_eq!(first.groups[0].usage.images, 6);
        assert_eq!(first.failures.len(), 1);
        assert_eq!(first.failures[0].failures, 4);
        assert_eq!(first.total.usage.requests, 4);
        assert_eq!(first.total.failures, 4);
        assert_eq!(report.buckets[1].start, day("2026-12-14"));
        assert_eq!(report.total.usage.requests, 8);
        assert!((report.total.usage.cost_usd - 3.75).abs() < 1e-9);
        assert_eq!(report.total.failures, 4);
    }
}
