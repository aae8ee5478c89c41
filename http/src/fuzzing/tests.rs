//! The stable-toolchain smoke of the edit form's fuzz target (issue #14): the same entry
//! point as `fuzz/`, fed by proptest with arbitrary bytes and with forms of OpenAI's
//! fields (real and broken images, any text, any boundary, cut or mangled anywhere).
//! 1,000 cases per property in the suite; a long run:
//! `SWITCHYARD_FUZZ_CASES=200000 cargo test --release -p switchyard-http --lib fuzzing`.

use base64::Engine as _;
use proptest::{prelude::*, sample::Index};

use super::*;

/// A 1×1 PNG.
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

fn cases() -> u32 {
    std::env::var("SWITCHYARD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn png() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(PNG_B64)
        .unwrap_or_default()
}

fn run(content_type: &[u8], chunks: Vec<Vec<u8>>) -> Result<Option<Command>, String> {
    edit_form_holds_now(content_type, chunks)
}

const NAMES: &[&str] = &[
    "image",
    "image[]",
    "mask",
    "prompt",
    "model",
    "n",
    "size",
    "quality",
    "response_format",
    "output_format",
    "user",
    "other",
];

/// One part: its name, whether it has a file name, and its content.
fn part() -> impl Strategy<Value = (usize, bool, Vec<u8>)> {
    let content = prop_oneof![
        Just(png()),
        proptest::collection::vec(any::<u8>(), 0..64),
        prop_oneof![
            Just("b64_json"),
            Just("url"),
            Just("3"),
            Just("11"),
            Just("1024x1024"),
            Just("png"),
            Just("a\u{0}b"),
        ]
        .prop_map(|s| s.as_bytes().to_vec()),
        ".{0,24}".prop_map(String::into_bytes),
    ];
    (0..NAMES.len(), any::<bool>(), content)
}

/// A multipart body of `parts` with `boundary` and line ending `end`, closed or not.
fn form_body(boundary: &str, parts: &[(usize, bool, Vec<u8>)], end: &str, closed: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file, content) in parts {
        body.extend_from_slice(format!("--{boundary}{end}").as_bytes());
        let file = if *file { "; filename=\"a.png\"" } else { "" };
        body.extend_from_slice(
            format!(
                "Content-Disposition: form-data; name=\"{}\"{file}{end}{end}",
                NAMES[*name]
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(end.as_bytes());
    }
    if closed {
        body.extend_from_slice(format!("--{boundary}--{end}").as_bytes());
    }
    body
}

fn chunked(bytes: &[u8], size: usize) -> Vec<Vec<u8>> {
    bytes.chunks(size.max(1)).map(<[u8]>::to_vec).collect()
}

#[test]
fn a_whole_form_is_read_into_a_command_the_bus_accepts() {
    let parts = [
        (0, true, png()),
        (2, true, png()),
        (3, false, b"a red door".to_vec()),
        (5, false, b"2".to_vec()),
    ];
    let body = form_body("X-BOUNDARY", &parts, "\r\n", true);
    let content_type = b"multipart/form-data; boundary=X-BOUNDARY";
    let command = run(content_type, chunked(&body, 5)).unwrap().unwrap();
    let input = &command.input;
    assert_eq!(input.images.as_ref().map(Vec::len), Some(1));
    assert!(input.mask.is_some());
    assert_eq!(input.prompt.as_deref(), Some("a red door"));
    assert_eq!(input.n, Some(2));
}

#[test]
fn the_fuzz_seeds_are_whole_forms() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/edit_form");
    let mut read = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let (content_type, chunks) = edit_form_input(&data).unwrap();
        let command = run(content_type, chunks).unwrap();
        assert!(command.is_some(), "{} is refused", path.display());
        read += 1;
    }
    assert!(read > 0, "no seeds in {}", dir.display());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let held = edit_form_bytes_hold(&data);
        prop_assert!(held.is_ok(), "{:?}", held);
    }

    #[test]
    fn forms_of_any_fields_hold(
        boundary in "[0-9A-Za-z'()+_,./:=?-]{1,70}",
        parts in proptest::collection::vec(part(), 0..14),
        end in prop_oneof![Just("\r\n"), Just("\n")],
        closed in any::<bool>(),
        mangle in proptest::option::of((any::<Index>(), any::<u8>())),
        cut in proptest::option::of(any::<Index>()),
        size in 1..300usize,
    ) {
        let mut body = form_body(&boundary, &parts, end, closed);
        if let Some((at, byte)) = mangle
            && !body.is_empty()
        {
            let at = at.index(body.len());
            body[at] = byte;
        }
        if let Some(cut) = cut
            && !body.is_empty()
        {
            body.truncate(cut.index(body.len()));
        }
        let content_type = format!("multipart/form-data; boundary=\"{boundary}\"");
        let held = run(content_type.as_bytes(), chunked(&body, size));
        prop_assert!(held.is_ok(), "{:?}", held);
    }
}
