//! JSON Schemas (draft 2020-12) of the wire types, generated from the types that parse
//! and build them, so a schema can never drift from the code. `docs/schema/` holds the
//! published copies; a test fails when they differ from what this module makes.

use serde_json::Value;

use super::{Command, Event};

/// The schema of a command (PROTOCOL.md §2).
pub fn command() -> Value {
    with_id(schemars::schema_for!(Command).to_value(), "command")
}

/// The schema of an event (PROTOCOL.md §3).
pub fn event() -> Value {
    with_id(schemars::schema_for!(Event).to_value(), "event")
}

/// Every published schema: (file name under `docs/schema/`, schema).
pub fn all() -> [(&'static str, Value); 2] {
    [
        ("command.schema.json", command()),
        ("event.schema.json", event()),
    ]
}

fn with_id(mut schema: Value, name: &str) -> Value {
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "$id".to_owned(),
            Value::String(format!("https://switchyard.dev/schema/{name}.schema.json")),
        );
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_schema_requires_what_the_protocol_requires() {
        let schema = command();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for field in ["request_id", "tenant", "kind", "input"] {
            assert!(required.contains(&field), "{field} in {required:?}");
        }
        assert!(!required.contains(&"priority"), "priority has a default");
        assert_eq!(
            schema["properties"]["tenant"]["$ref"], "#/$defs/Tenant",
            "{schema:#}"
        );
        assert_eq!(
            schema["$defs"]["Tenant"]["pattern"],
            "^[A-Za-z0-9_-]{1,64}$"
        );
    }

    #[test]
    fn the_event_schema_names_every_event_type() {
        let text = event().to_string();
        for name in [
            "accepted",
            "started",
            "progress",
            "chunk",
            "completed",
            "failed",
        ] {
            assert!(text.contains(&format!("\"{name}\"")), "{name}");
        }
    }
}
