//! `GET /v1/usage`: a tenant's finished requests over a time window, grouped by
//! provider type, model and kind, with totals.

use axum::{
    Json,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AdminState, error, store_error};

/// How far back `GET /v1/usage` looks without `from`.
const USAGE_DEFAULT_DAYS: i64 = 30;

/// Query of `GET /v1/usage`.
#[derive(Debug, Deserialize)]
pub(super) struct UsageQuery {
    tenant: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// The required `tenant` query parameter, checked.
#[expect(
    clippy::result_large_err,
    reason = "a handler helper whose error is the response itself"
)]
pub(super) fn tenant_query(tenant: Option<&str>) -> Result<&str, Response> {
    let Some(tenant) = tenant else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the tenant query parameter is required",
        ));
    };
    switchyard_core::Tenant::new(tenant)
        .map(|_| tenant)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("tenant: {e}")))
}

#[expect(
    clippy::result_large_err,
    reason = "a handler helper whose error is the response itself"
)]
fn parse_time(
    name: &str,
    value: Option<&str>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Response> {
    value
        .map(|text| {
            chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| {
                    error(
                        StatusCode::BAD_REQUEST,
                        format!("{name} '{text}' is not an RFC 3339 time: {e}"),
                    )
                })
        })
        .transpose()
}

#[utoipa::path(get, path = "/v1/usage", tag = "usage", security(("admin" = [])), params(("tenant" = String, Query, description = "the tenant (required)"), ("from" = Option<String>, Query, description = "RFC 3339, inclusive (default: 30 days before `to`)"), ("to" = Option<String>, Query, description = "RFC 3339, exclusive (default: now)")), responses((status = 200, description = "{tenant, from, to, groups: [{provider, model, kind, requests, images, input_tokens, output_tokens, cost_usd}], total: {requests, images, input_tokens, output_tokens, cost_usd}}: finished requests that used a provider, grouped by provider type, model and kind"), (status = 400, description = "missing tenant, bad time, or from not before to"), (status = 401, description = "missing or wrong admin token")))]
pub(super) async fn usage(
    State(admin): State<AdminState>,
    Query(query): Query<UsageQuery>,
) -> Response {
    let tenant = match tenant_query(query.tenant.as_deref()) {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let (from, to) = match (
        parse_time("from", query.from.as_deref()),
        parse_time("to", query.to.as_deref()),
    ) {
        (Ok(from), Ok(to)) => {
            let to = to.unwrap_or_else(chrono::Utc::now);
            (
                from.unwrap_or(to - chrono::Duration::days(USAGE_DEFAULT_DAYS)),
                to,
            )
        }
        (Err(response), _) | (_, Err(response)) => return response,
    };
    if from >= to {
        return error(StatusCode::BAD_REQUEST, "from must be before to");
    }
    let rows = match admin.store.usage_summary(tenant, from, to).await {
        Ok(rows) => rows,
        Err(e) => return store_error(e),
    };
    let groups: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "provider": r.provider, "model": r.model, "kind": r.kind,
                "requests": r.requests, "images": r.images,
                "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
                "cost_usd": r.cost_usd,
            })
        })
        .collect();
    let sum =
        |f: fn(&switchyard_runtime::store::UsageSummaryRow) -> i64| rows.iter().map(f).sum::<i64>();
    Json(json!({
        "tenant": tenant,
        "from": from,
        "to": to,
        "groups": groups,
        "total": {
            "requests": sum(|r| r.requests),
            "images": sum(|r| r.images),
            "input_tokens": sum(|r| r.input_tokens),
            "output_tokens": sum(|r| r.output_tokens),
            "cost_usd": rows.iter().map(|r| r.cost_usd).sum::<f64>(),
        },
    }))
    .into_response()
}
