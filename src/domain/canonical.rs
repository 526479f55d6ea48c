//! Canonical JSON and the argument hash that binds a decision to the exact input a reviewer saw.

use std::fmt::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::approval::{ApprovalId, InvocationInput};

/// JSON with object keys sorted at every depth and no insignificant whitespace, independent of
/// how serde_json was built (`preserve_order` or not).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The argument hash of input `index` of request `id`: SHA-256 over the canonical JSON of
/// `{"invocationId", "index", "input"}`. Any change to the action, a parameter name, type or value,
/// or the request body changes it.
pub fn input_hash(id: &ApprovalId, index: usize, input: &InvocationInput) -> String {
    let input = serde_json::to_value(input).unwrap_or(Value::Null);
    let doc = serde_json::json!({ "invocationId": id.as_str(), "index": index, "input": input });
    sha256_hex(canonical_json(&doc).as_bytes())
}

/// SHA-256 of the canonical form of any serialisable value (audit payloads, request bodies).
pub fn value_hash(value: &Value) -> String {
    sha256_hex(canonical_json(value).as_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_sorts_keys_at_every_depth() {
        let a = json!({"b": 1, "a": {"y": [2, {"d": 1, "c": 2}], "x": "s"}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":"s","y":[2,{"c":2,"d":1}]},"b":1}"#
        );
    }

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
