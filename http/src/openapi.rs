//! The OpenAPI document of every endpoint (served at `/openapi.json`): the paths, the
//! schemas of their bodies (derived with `utoipa::ToSchema` next to their handlers),
//! and the two bearer schemes (`admin`, `tenant`).
//!
//! Bodies whose types live in other crates (commands, events, provider configs, store
//! records) are named components whose schema is a bare object for now (see
//! [`FOREIGN`]); their own JSON Schemas can replace them under the same names.

use serde_json::Value;
use utoipa::openapi::{
    ObjectBuilder, Type,
    security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::{jobs, keys, openai, operations, plugins, providers, quotas, usage};

/// The OpenAPI document of every endpoint above (served at `/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Switchyard", description = "Event-driven gateway to AI image and text providers. Admin endpoints need `Authorization: Bearer <admin token>`."),
    paths(operations::healthz, operations::readyz, operations::metrics_text, operations::artifact, providers::list_providers, providers::create_provider, providers::get_provider, providers::patch_provider, providers::delete_provider, providers::reload, providers::status, providers::test_provider, usage::usage, jobs::submit_job, jobs::get_job, jobs::job_events, quotas::list_quotas, quotas::put_quota, quotas::delete_quota, keys::create_key, keys::list_keys, keys::revoke_key, openai::images::image_generations, openai::images::image_edits, openai::chat::chat_completions, openai::models, plugins::install_plugin, plugins::list_plugins, plugins::get_plugin, plugins::delete_plugin, plugins::rollback_plugin),
    components(schemas(openai::chat::StreamError)),
    modifiers(&BearerSchemes, &ForeignSchemas),
)]
pub struct ApiDoc;

/// The OpenAPI document as JSON.
pub fn openapi() -> Value {
    serde_json::to_value(<ApiDoc as utoipa::OpenApi>::openapi()).unwrap_or(Value::Null)
}

/// The components named for types of other crates, and what each is.
pub(crate) const FOREIGN: &[(&str, &str)] = &[
    ("Command", "a command (PROTOCOL.md §2)"),
    ("Event", "an event (PROTOCOL.md §3)"),
    (
        "ProviderConfig",
        "a stored provider config (PROTOCOL.md §6), its key masked; an invalid row shows its errors",
    ),
    (
        "ProviderConfigDraft",
        "a provider config object (PROTOCOL.md §6): any subset of its fields",
    ),
    (
        "ReloadReport",
        "{live, added, replaced, removed, invalid, failed, versions}",
    ),
    (
        "Quota",
        "{tenant, user, period: \"day\"|\"month\", max_requests, max_images, max_cost_usd}",
    ),
    (
        "PluginInfo",
        "{id, name, version, sha256, bytes, active, created_at}",
    ),
];

struct BearerSchemes;

impl utoipa::Modify for BearerSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in ["admin", "tenant"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

struct ForeignSchemas;

impl utoipa::Modify for ForeignSchemas {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in FOREIGN {
            let schema = ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(*description))
                .build();
            components
                .schemas
                .entry((*name).to_owned())
                .or_insert_with(|| schema.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The component a schema names: its `$ref`, or its items' for an array.
    fn named(schema: &Value) -> Option<&str> {
        schema
            .get("$ref")
            .or_else(|| schema.get("items").and_then(|items| items.get("$ref")))
            .and_then(Value::as_str)
    }

    #[test]
    fn the_document_carries_the_body_schemas() {
        let doc = openapi();
        let schemas = doc["components"]["schemas"]
            .as_object()
            .expect("components.schemas");
        for name in [
            "ErrorBody",
            "OpenAiErrorBody",
            "ProviderPage",
            "ProvidersStatus",
            "TestAnswer",
            "UsageReport",
            "QuotaList",
            "QuotaBody",
            "NewKey",
            "CreatedKey",
            "KeyList",
            "Job",
            "JobQueued",
            "PluginList",
            "PluginDetail",
            "Rollback",
            "ModelList",
            "ChatCompletion",
            "ChatCompletionAnswer",
            "ImageGeneration",
            "ImagesAnswer",
            "StreamError",
            "Command",
            "Event",
        ] {
            assert!(schemas.contains_key(name), "no schema {name}");
        }
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                let Some(responses) = operation.get("responses").and_then(Value::as_object) else {
                    continue;
                };
                for (status, response) in responses {
                    let content = response.get("content").and_then(Value::as_object);
                    if status == "200" {
                        assert!(
                            content.is_some_and(|c| c.values().all(|m| m.get("schema").is_some())),
                            "{method} {path}: its 200 names no schema"
                        );
                    }
                    let Some(json) = content.and_then(|c| c.get("application/json")) else {
                        continue;
                    };
                    // Every JSON answer, success or error, is a named component.
                    let name = named(&json["schema"])
                        .unwrap_or_else(|| panic!("{method} {path} {status}: no named schema"));
                    let name = name.trim_start_matches("#/components/schemas/");
                    assert!(schemas.contains_key(name), "{method} {path}: no {name}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 50, "only {checked} JSON answers");
    }
}
