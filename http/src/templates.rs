//! Prompt templates (admin token): `GET /v1/templates`, and `GET`, `PUT` and `DELETE
//! /v1/templates/{name}`. A command names one in `input.template: {name, variables}`
//! (docs/protocol-extensions.md).

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use switchyard_runtime::facade::{PromptTemplate, TemplateError, valid_template_name};
use utoipa::ToSchema;

use crate::{
    error::{ApiError, ErrorBody, json_body},
    state::AdminApi,
};

/// The templates.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TemplateList {
    /// `{name, kind, template, enabled, created_at, updated_at}` each.
    #[schema(value_type = Vec<Object>)]
    items: Vec<PromptTemplate>,
}

/// A template: `{name, kind, template, enabled, created_at, updated_at}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TemplateBody {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    template: PromptTemplate,
}

/// `PUT`: `{kind, template, enabled?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplatePut {
    kind: String,
    template: String,
    #[serde(default = "enabled")]
    enabled: bool,
}

fn enabled() -> bool {
    true
}

/// A template's name: letters, digits, `-`, `_` and `.`, at most 100.
fn name_of(name: &str) -> Result<&str, ApiError> {
    if valid_template_name(name) {
        Ok(name)
    } else {
        Err(ApiError::bad_request(
            "name: 1 to 100 letters, digits, '-', '_' or '.'",
        ))
    }
}

#[utoipa::path(get, path = "/v1/templates", tag = "templates", security(("admin" = [])), responses((status = 200, description = "every template", body = TemplateList), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn list_templates(
    State(AdminApi { gateway, .. }): State<AdminApi>,
) -> Result<Json<TemplateList>, ApiError> {
    Ok(Json(TemplateList {
        items: gateway.templates().await?,
    }))
}

#[utoipa::path(get, path = "/v1/templates/{name}", tag = "templates", security(("admin" = [])), params(("name" = String, Path, description = "the template")), responses((status = 200, description = "the template", body = TemplateBody), (status = 404, description = "no such template", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn get_template(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(name): Path<String>,
) -> Result<Json<TemplateBody>, ApiError> {
    let name = name_of(&name)?;
    let template = gateway
        .template(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no template '{name}'")))?;
    Ok(Json(TemplateBody { template }))
}

#[utoipa::path(put, path = "/v1/templates/{name}", tag = "templates", security(("admin" = [])), params(("name" = String, Path, description = "the template")), request_body(content = Object, description = "`{kind: text|image, template, enabled?}`: Jinja syntax, rendered in a sandbox (no include or import), at most 16 KiB", content_type = "application/json"), responses((status = 200, description = "stored; applies at once here, within 2 s on other replicas", body = TemplateBody), (status = 400, description = "a bad field, named (a syntax error says where)", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn put_template(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<TemplateBody>, ApiError> {
    let name = name_of(&name)?;
    let put: TemplatePut = json_body(&body, "a template")?;
    let template = gateway
        .put_template(name, &put.kind, &put.template, put.enabled)
        .await
        .map_err(|e| match e {
            TemplateError::Invalid(message) => ApiError::bad_request(message),
            TemplateError::Database(e) => e.into(),
        })?;
    Ok(Json(TemplateBody { template }))
}

#[utoipa::path(delete, path = "/v1/templates/{name}", tag = "templates", security(("admin" = [])), params(("name" = String, Path, description = "the template")), responses((status = 204, description = "removed"), (status = 404, description = "no such template", body = ErrorBody), (status = 401, description = "missing or wrong admin token", body = ErrorBody)))]
pub(super) async fn delete_template(
    State(AdminApi { gateway, .. }): State<AdminApi>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = name_of(&name)?;
    if gateway.delete_template(name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no template '{name}'")))
    }
}
