//! Canonical JSON and the argument hash that binds a decision to the exact input a reviewer saw.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::approval::{ApprovalId, InvocationInput};

/// JSON with object keys sorted at every depth and no insignificant whitespace, independent of
/// how serde_json was built (`preserve_order` or not).
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    // Only serde_json's own output and ASCII punctuation went in: always UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Writes `value` canonically into `out`. Keys and scalars are written by serde_json straight
/// into the buffer (a string or number built per key and per value cost more than the hash of
/// the result on every approval request and audit entry).
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // Already in order unless serde_json keeps insertion order (`preserve_order`).
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                scalar(k, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        other => scalar(other, out),
    }
}

/// A string, number, bool or null as serde_json writes it. Writing into a `Vec` cannot fail,
/// nor can serialising these.
fn scalar<T: serde::Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(out, v);
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
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

    /// Keys and strings are escaped, and numbers, bools and null written, exactly as
    /// serde_json writes them: stored hashes of request bodies and audit entries depend on it.
    #[test]
    fn canonical_writes_scalars_and_escaped_keys_as_serde_json_does() {
        let v = json!({
            "z\"q\\": "tab\tnl\n\u{1}\u{202e}é",
            "n": [0, -7, 1.5, 1e300, u64::MAX, true, false, null],
            "": {}
        });
        assert_eq!(
            canonical_json(&v),
            "{\"\":{},\"n\":[0,-7,1.5,1e+300,18446744073709551615,true,false,null],\
             \"z\\\"q\\\\\":\"tab\\tnl\\n\\u0001\u{202e}é\"}"
        );
        assert_eq!(value_hash(&v), sha256_hex(canonical_json(&v).as_bytes()));
    }

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
