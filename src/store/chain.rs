//! The audit chain's format, shared by every store adapter so a chain means the same whatever
//! holds it: the genesis hash, how an entry's hash is computed, and how a decision appears in a
//! `decided` entry's payload. Pure; no IO.

use serde_json::{Value, json};

use crate::domain::canonical::sha256_hex;
use crate::domain::decision::Decision;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Tags the serialisation so a hash from another format can never collide with one of these.
const DOMAIN: &str = "agentdeck-audit-v1";

/// SHA-256 over the fields as netstrings (`<byte length>:<bytes>,` each, after a format tag), so
/// no two different field lists serialise to the same bytes whatever the fields contain.
pub fn entry_hash(
    prev_hash: &str,
    seq: i64,
    at_ms: i64,
    actor: &str,
    kind: &str,
    request_id: &str,
    payload: &str,
) -> String {
    let seq = seq.to_string();
    let at_ms = at_ms.to_string();
    let fields: [&str; 8] = [
        DOMAIN, prev_hash, &seq, &at_ms, actor, kind, request_id, payload,
    ];
    let mut buf = Vec::with_capacity(fields.iter().map(|f| f.len() + 8).sum());
    for f in fields {
        buf.extend_from_slice(f.len().to_string().as_bytes());
        buf.push(b':');
        buf.extend_from_slice(f.as_bytes());
        buf.push(b',');
    }
    sha256_hex(&buf)
}

/// A decision as it appears in a `decided` audit payload, so a check can compare stored rows
/// with the log field by field.
pub fn decision_json(seq: i64, d: &Decision) -> Value {
    json!({
        "seq": seq,
        "inputIndex": d.input_index,
        "verdict": d.verdict.as_str(),
        "reviewer": d.reviewer,
        "reason": d.reason,
        "decidedAtMs": d.decided_at.timestamp_millis(),
        "dwellMs": d.dwell_ms,
        "argsHash": d.args_hash,
    })
}
