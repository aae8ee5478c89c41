//! The stable-toolchain smoke of the command fuzz target (issue #14): the same entry
//! point as `fuzz/` ([`crate::fuzzing::command_holds`]), fed by proptest. Arbitrary
//! bytes, and valid commands with arbitrary JSON spliced into arbitrary fields, go
//! through the envelope and the whole parse and validation; whatever parses survives a
//! round trip. A long run:
//! `SWITCHYARD_FUZZ_CASES=2000000 cargo test -p switchyard-core --lib robustness`.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::fuzzing::command_holds;

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: &[&str] = &[
    "request_id",
    "tenant",
    "kind",
    "input",
    "route",
    "params",
    "priority",
    "deadline_ms",
    "reply_to",
    "metadata",
    "user",
    "cache",
    "v",
];
const INPUT_FIELDS: &[&str] = &[
    "prompt",
    "n",
    "size",
    "images",
    "mask",
    "messages",
    "max_tokens",
    "stream",
    "seed",
    "negative_prompt",
    "temperature",
];

fn base() -> Value {
    json!({"request_id": "r1", "tenant": "acme", "kind": "image.edit",
           "input": {"prompt": "p", "images": [{"artifact_id": "a"}]},
           "route": {"strategy": "priority"}})
}

/// Cases per property: 2,000 in the suite (well under a second), more with
/// `SWITCHYARD_FUZZ_CASES` for a long run.
fn cases() -> u32 {
    std::env::var("SWITCHYARD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

#[test]
fn the_fuzz_seeds_are_accepted() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/command");
    let mut read = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let body = std::fs::read(&path).unwrap();
        assert_eq!(command_holds(&body), Ok(true), "{}", path.display());
        read += 1;
    }
    assert!(read > 0, "no seeds in {}", dir.display());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let held = command_holds(&bytes);
        prop_assert!(held.is_ok(), "{:?}", held);
    }

    #[test]
    fn commands_with_hostile_fields_never_panic_and_round_trip(
        field in 0..FIELDS.len(),
        input_field in 0..INPUT_FIELDS.len(),
        value in any_json(),
        in_input in any::<bool>(),
    ) {
        let mut command = base();
        if in_input {
            command["input"][INPUT_FIELDS[input_field]] = value;
        } else {
            command[FIELDS[field]] = value;
        }
        let bytes = serde_json::to_vec(&command).unwrap_or_default();
        let held = command_holds(&bytes);
        prop_assert!(held.is_ok(), "{:?}", held);
    }
}
