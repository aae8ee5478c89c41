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
}
