//! NUL characters: JSON may carry `\u0000`, but PostgreSQL stores it in neither `text`
//! nor `jsonb`, so a command holding one would fail at every delivery as if the
//! database were down. It is refused at validation instead, naming the field.

use serde_json::Value;

/// The paths (`input.prompt`, `metadata.note`, `input.messages[0].content` …) of every
/// string or object key in `value` that holds a NUL.
pub(super) fn paths(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(value, &mut String::new(), &mut out);
    out
}

fn walk(value: &Value, path: &mut String, out: &mut Vec<String>) {
    match value {
        Value::String(text) if text.contains('\0') => out.push(path.clone()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, out);
                path.truncate(len);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key.replace('\0', "\\u0000"));
                if key.contains('\0') {
                    out.push(path.clone());
                } else {
                    walk(item, path, out);
                }
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Whether a JSON text holds the escape `\u0000` anywhere (an escaped backslash
/// followed by `u0000`, as in `"\\u0000"`, is not one). A text without it decodes to
/// strings without NUL.
pub(super) fn escaped_in(json: &[u8]) -> bool {
    memchr::memmem::find_iter(json, b"\\u0000").any(|at| {
        json[..at]
            .iter()
            .rev()
            .take_while(|&&byte| byte == b'\\')
            .count()
            % 2
            == 0
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_nul_is_found_by_its_path() {
        let value = json!({"user": "a\u{0}b", "input": {"prompt": "fine",
            "messages": [{"content": "ok"}, {"content": "\u{0}"}]},
            "metadata": {"k\u{0}": "v", "deep": {"list": ["x", "y\u{0}"]}}});
        let mut found = paths(&value);
        found.sort();
        assert_eq!(
            found,
            [
                "input.messages[1].content",
                "metadata.deep.list[1]",
                "metadata.k\\u0000",
                "user"
            ]
        );
        assert!(paths(&json!({"a": "no nul here", "b": [1, 2]})).is_empty());
    }

    #[test]
    fn the_escape_is_found_in_the_text_and_an_escaped_backslash_is_not_one() {
        assert!(escaped_in(br#"{"prompt": "a\u0000b"}"#));
        assert!(escaped_in(br#"{"p": "\\\u0000"}"#));
        assert!(!escaped_in(br#"{"p": "\\u0000"}"#));
        assert!(!escaped_in(br#"{"p": "u0000 \u0001"}"#));
        assert!(!escaped_in(b""));
    }

    #[test]
    fn a_body_with_the_escape_is_refused_and_one_without_it_is_not_walked_in_vain() {
        use crate::protocol::Command;
        let body = |prompt: &str| {
            format!(
                r#"{{"v":1,"request_id":"r","tenant":"t","kind":"image.generate","input":{{"prompt":"{prompt}"}}}}"#
            )
        };
        let refused = Command::parse_and_validate(body("x\\u0000").as_bytes(), None).unwrap_err();
        assert!(refused.to_string().contains("input.prompt"), "{refused}");
        assert!(Command::parse_and_validate(body("x\\\\u0000").as_bytes(), None).is_ok());
    }
}
