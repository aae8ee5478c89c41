//! The OpenAPI document of every endpoint (served at `/openapi.json`): the paths, the
//! schemas of their bodies (derived with `utoipa::ToSchema` next to their handlers),
//! and the two bearer schemes (`admin`, `tenant`).
//!
//! Bodies whose types live in other crates are named components. `Command` and `Event`
//! carry the JSON Schemas core makes from the wire types (the ones published in
//! `docs/schema/`), their definitions under `Protocol…` names; the others (provider
//! configs, store records) are bare objects described in prose for now (see
//! [`FOREIGN`]).

use serde_json::Value;
use utoipa::openapi::{
    ObjectBuilder, Type,
    security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::{
    artifacts, batches, feedback, jobs, keys, limits, openai, operations, plans, plugins,
    providers, quotas, retention, stats, templates, tenant_providers, usage, usage_report,
    webhooks,
};

/// The OpenAPI document of every endpoint above (served at `/openapi.json`).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Switchyard", description = "Event-driven gateway to AI image and text providers. Admin endpoints need `Authorization: Bearer <admin token>`."),
    paths(operations::healthz, operations::readyz, operations::metrics_text, artifacts::artifact, providers::list_providers, providers::create_provider, providers::get_provider, providers::patch_provider, providers::delete_provider, providers::reload, providers::status, providers::test_provider, usage::usage, usage_report::usage_report, jobs::submit_job, jobs::get_job, jobs::job_events, batches::submit_batch, batches::get_batch, batches::cancel_batch, feedback::post_feedback, stats::all_stats, stats::one_stats, quotas::list_quotas, quotas::put_quota, quotas::delete_quota, keys::create_key, keys::list_keys, keys::revoke_key, limits::get_limits, limits::put_limits, limits::delete_limits, retention::get_retention, retention::put_retention, retention::delete_retention, tenant_providers::list_own, tenant_providers::create_own, tenant_providers::get_own, tenant_providers::patch_own, tenant_providers::delete_own, webhooks::list_webhooks, webhooks::create_webhook, webhooks::get_webhook, webhooks::patch_webhook, webhooks::delete_webhook, webhooks::list_deliveries, templates::list_templates, templates::get_template, templates::put_template, templates::delete_template, plans::list_plans, plans::put_plan, plans::delete_plan, plans::get_tenant_plan, plans::put_tenant_plan, plans::delete_tenant_plan, openai::images::image_generations, openai::images::image_edits, openai::chat::chat_completions, openai::models, plugins::install_plugin, plugins::list_plugins, plugins::get_plugin, plugins::delete_plugin, plugins::rollback_plugin),
    components(schemas(openai::chat::StreamError)),
    modifiers(&BearerSchemes, &ForeignSchemas),
)]
pub struct ApiDoc;

/// The OpenAPI document as JSON.
pub fn openapi() -> Value {
    let mut doc =
        serde_json::to_value(<ApiDoc as utoipa::OpenApi>::openapi()).unwrap_or(Value::Null);
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        use switchyard_core::protocol::schema;
        for (name, json_schema) in [("Command", schema::command()), ("Event", schema::event())] {
            insert_json_schema(schemas, name, json_schema);
        }
    }
    doc
}

/// Puts a JSON Schema (draft 2020-12, which OpenAPI 3.1 speaks) in as component `name`:
/// its `$defs` become components of their own, prefixed `Protocol` so they never
/// collide with this crate's, and every `$ref` follows them there.
fn insert_json_schema(
    schemas: &mut serde_json::Map<String, Value>,
    name: &str,
    mut json_schema: Value,
) {
    fn rewrite(value: &mut Value) {
        match value {
            Value::Object(object) => {
                if let Some(Value::String(target)) = object.get_mut("$ref")
                    && let Some(def) = target.strip_prefix("#/$defs/")
                {
                    *target = format!("#/components/schemas/Protocol{def}");
                }
                object.values_mut().for_each(rewrite);
            }
            Value::Array(items) => items.iter_mut().for_each(rewrite),
            _ => {}
        }
    }
    let Some(object) = json_schema.as_object_mut() else {
        return;
    };
    let defs = object.remove("$defs");
    for keyword in ["$schema", "$id"] {
        object.remove(keyword);
    }
    rewrite(&mut json_schema);
    schemas.insert(name.to_owned(), json_schema);
    if let Some(Value::Object(defs)) = defs {
        for (def, mut def_schema) in defs {
            rewrite(&mut def_schema);
            schemas.insert(format!("Protocol{def}"), def_schema);
        }
    }
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
        "{tenant, user, period: \"day\"|\"month\", max_requests, max_images, max_tokens, max_cost_usd}",
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
            "BatchView",
            "NewBatch",
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

    #[test]
    fn commands_and_events_carry_the_wire_schemas() {
        let doc = openapi();
        let schemas = &doc["components"]["schemas"];
        let command = &schemas["Command"];
        assert_eq!(
            command["properties"]["tenant"]["$ref"], "#/components/schemas/ProtocolTenant",
            "{command:#}"
        );
        assert_eq!(
            schemas["ProtocolTenant"]["pattern"],
            "^[A-Za-z0-9_-]{1,64}$"
        );
        assert!(schemas["Event"]["properties"]["seq"].is_object());
        // Every reference resolves to a component.
        let text = doc.to_string();
        for target in text.split("\"#/components/schemas/").skip(1) {
            let name = &target[..target.find('"').unwrap()];
            assert!(schemas.get(name).is_some(), "dangling $ref to {name}");
        }
        assert!(!text.contains("#/$defs/"));
    }
}
