//! The published JSON Schemas (`docs/schema/`) are the ones the types make: a change to
//! a wire type that is not regenerated fails here. Regenerate with
//! `SWITCHYARD_BLESS=1 cargo nextest run -p switchyard --test it schema::`.

use std::path::Path;

use switchyard_core::protocol::schema;

#[test]
fn published_json_schemas_match_the_wire_types() {
    let dir = Path::new(&crate::support::manifest_dir()).join("docs/schema");
    let bless = std::env::var_os("SWITCHYARD_BLESS").is_some();
    for (name, schema) in schema::all() {
        let want = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = dir.join(name);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/schema/{name} differs from the types; regenerate it with \
             SWITCHYARD_BLESS=1 cargo nextest run -p switchyard --test it schema::"
        );
    }
}

#[test]
fn the_protocol_example_command_uses_only_fields_the_schema_names() {
    let protocol = include_str!("../../docs/PROTOCOL.md");
    let start = protocol.find("```json\n").unwrap() + 8;
    let end = start + protocol[start..].find("```").unwrap();
    let example: serde_json::Value = serde_json::from_str(&protocol[start..end]).unwrap();
    let command = schema::command();
    for field in example.as_object().unwrap().keys() {
        assert!(
            command["properties"].get(field).is_some(),
            "the schema has no property {field}"
        );
    }
}
