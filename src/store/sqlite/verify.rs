//! The audit check: the hash chain on its own, then the tables against the log (every request,
//! decision and status must be what the log says, and nothing the log records may be missing).
//! Reads leniently: whatever is in the file, a problem becomes a line of the report, never a
//! panic or an early stop.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::Connection;
use rusqlite::types::ValueRef;
use serde_json::{Map, Value};

use super::audit::{GENESIS, entry_hash};
use super::schema::Summary;
use crate::domain::approval::ApprovalRequest;
use crate::domain::canonical::{canonical_json, sha256_hex};
use crate::store::{AuditReport, StoreError};

/// What the log says about one request.
#[derive(Debug, Default)]
struct RequestLog {
    /// The `submitted` entry's seq and the body hash it recorded.
    submitted: Option<(i64, String)>,
    /// The status the last entry on this request set, and that entry's seq.
    last_status: Option<(String, i64)>,
}

/// A decision as a `decided` entry recorded it.
#[derive(Debug)]
struct LoggedDecision {
    entry: i64,
    fields: Value,
}

#[derive(Debug, Default)]
struct Log {
    entries: u64,
    requests: HashMap<String, RequestLog>,
    decisions: HashMap<(String, i64), LoggedDecision>,
}

/// A column as text for messages and comparisons, whatever type it holds.
fn text(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "NULL".to_owned(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Blob(b) => format!("<blob of {} bytes>", b.len()),
    }
}

fn int(v: ValueRef<'_>) -> Option<i64> {
    match v {
        ValueRef::Integer(i) => Some(i),
        _ => None,
    }
}

/// A column as JSON, the way a `decided` payload writes it.
fn json_of(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => Value::from(f),
        ValueRef::Text(_) | ValueRef::Blob(_) => Value::String(text(v)),
    }
}

fn db(path: &str, doing: &str) -> impl Fn(rusqlite::Error) -> StoreError {
    let doing = format!("audit check: {doing}");
    move |e| super::db_error(path, &doing, &e)
}

pub(super) fn verify(conn: &mut Connection, path: &str) -> Result<AuditReport, StoreError> {
    // One read transaction: the log and the tables are checked on the same snapshot.
    let tx = conn.transaction().map_err(db(path, "starting a read"))?;
    let mut problems = Vec::new();
    let mut log = read_log(&tx, path, &mut problems)?;
    check_requests(&tx, path, &mut log, &mut problems)?;
    check_orphan_decisions(&tx, path, &mut log, &mut problems)?;
    check_outbox(&tx, path, &mut problems)?;

    let mut leftovers: BTreeMap<i64, String> = BTreeMap::new();
    for (id, r) in &log.requests {
        if let Some((seq, _)) = &r.submitted {
            leftovers.insert(
                *seq,
                format!(
                    "audit entry {seq} (request {id}): the request it submitted is no longer in \
                     the requests table: it was deleted"
                ),
            );
        }
    }
    let mut missing: Vec<_> = log.decisions.iter().collect();
    missing.sort_by(|a, b| (a.1.entry, &a.0.0, a.0.1).cmp(&(b.1.entry, &b.0.0, b.0.1)));
    problems.extend(leftovers.into_values());
    for ((id, seq), d) in missing {
        problems.push(format!(
            "audit entry {} (request {id}): records decision {seq} but the decisions table has \
             no such row: it was deleted",
            d.entry
        ));
    }
    Ok(AuditReport {
        entries: log.entries,
        problems,
    })
}

/// Walks the chain in seq order and collects what it says about each request.
fn read_log(conn: &Connection, path: &str, problems: &mut Vec<String>) -> Result<Log, StoreError> {
    let mut st = conn
        .prepare("SELECT seq, at_ms, actor, kind, request_id, payload, prev_hash, hash FROM audit ORDER BY seq")
        .map_err(db(path, "reading the audit log"))?;
    let mut rows = st.query([]).map_err(db(path, "reading the audit log"))?;
    let mut log = Log::default();
    let mut expected_seq = 1_i64;
    let mut prev_hash = GENESIS.to_owned();
    while let Some(row) = rows.next().map_err(db(path, "reading the audit log"))? {
        log.entries += 1;
        let cell = |i: usize| row.get_ref(i).map_err(db(path, "reading the audit log"));
        let seq_v = cell(0)?;
        let Some(seq) = int(seq_v) else {
            problems.push(format!(
                "audit entry with seq {:?}: seq is not an integer",
                text(seq_v)
            ));
            continue;
        };
        let at = cell(1)?;
        let (actor, kind, request) = (text(cell(2)?), text(cell(3)?), text(cell(4)?));
        let (payload, stored_prev, hash) = (text(cell(5)?), text(cell(6)?), text(cell(7)?));
        let name = format!("audit entry {seq} (request {request})");

        if seq != expected_seq {
            let missing = if seq == expected_seq + 1 {
                format!("entry {expected_seq} is missing")
            } else if seq > expected_seq {
                format!("entries {expected_seq} to {} are missing", seq - 1)
            } else {
                format!("expected seq {expected_seq}")
            };
            problems.push(format!(
                "{name}: follows entry {}: {missing}: entries were deleted",
                expected_seq - 1
            ));
        } else if stored_prev != prev_hash {
            problems.push(format!(
                "{name}: its prev_hash is not the hash of entry {}: the chain is broken there",
                seq - 1
            ));
        }
        let recomputed = match int(at) {
            Some(at_ms) => entry_hash(&stored_prev, seq, at_ms, &actor, &kind, &request, &payload),
            None => String::new(),
        };
        if recomputed != hash {
            problems.push(format!(
                "{name}: its hash does not recompute: the entry was edited after it was written"
            ));
        }
        prev_hash = hash;
        expected_seq = seq + 1;

        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&payload) else {
            problems.push(format!("{name}: its payload is not a JSON object"));
            continue;
        };
        if fields.get("request").and_then(Value::as_str) != Some(request.as_str()) {
            problems.push(format!("{name}: its payload names a different request"));
        }
        record_entry(&mut log, seq, &kind, &request, &fields, &name, problems);
    }
    Ok(log)
}

fn record_entry(
    log: &mut Log,
    seq: i64,
    kind: &str,
    request: &str,
    fields: &Map<String, Value>,
    name: &str,
    problems: &mut Vec<String>,
) {
    let status = fields
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let entry = log.requests.entry(request.to_owned()).or_default();
    match kind {
        "submitted" => {
            if let Some((first, _)) = &entry.submitted {
                problems.push(format!(
                    "{name}: submits a request entry {first} already submitted"
                ));
                return;
            }
            let body_hash = fields
                .get("bodyHash")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            entry.submitted = Some((seq, body_hash));
        }
        "decided" | "expired" => {
            if entry.submitted.is_none() {
                problems.push(format!(
                    "{name}: records a {kind} request that no earlier entry submitted"
                ));
            }
            if kind == "decided" {
                let rows = fields.get("decisions").and_then(Value::as_array);
                for d in rows.into_iter().flatten() {
                    let Some(dseq) = d.get("seq").and_then(Value::as_i64) else {
                        problems.push(format!("{name}: a decision in its payload has no seq"));
                        continue;
                    };
                    let key = (request.to_owned(), dseq);
                    if let Some(first) = log.decisions.get(&key) {
                        problems.push(format!(
                            "{name}: records decision {dseq} again (first in entry {})",
                            first.entry
                        ));
                        continue;
                    }
                    log.decisions.insert(
                        key,
                        LoggedDecision {
                            entry: seq,
                            fields: d.clone(),
                        },
                    );
                }
            }
        }
        other => {
            problems.push(format!("{name}: unknown kind {other:?}"));
            return;
        }
    }
    let entry = log.requests.entry(request.to_owned()).or_default();
    match status {
        Some(s) => entry.last_status = Some((s, seq)),
        None => problems.push(format!("{name}: its payload has no status")),
    }
}

const REQUEST_COLUMNS: [&str; 11] = [
    "agent_id",
    "agent_alias_id",
    "session_id",
    "tier",
    "reason",
    "rule",
    "action",
    "key_params",
    "inputs",
    "raised_at_ms",
    "expires_at_ms",
];

/// Every request row against its `submitted` entry, its body, its decisions and its last status.
fn check_requests(
    conn: &Connection,
    path: &str,
    log: &mut Log,
    problems: &mut Vec<String>,
) -> Result<(), StoreError> {
    let sql = format!(
        "SELECT id, status, approvals, body, body_hash, {} FROM requests ORDER BY id",
        REQUEST_COLUMNS.join(", ")
    );
    let mut st = conn
        .prepare(&sql)
        .map_err(db(path, "reading the requests"))?;
    let mut rows = st.query([]).map_err(db(path, "reading the requests"))?;
    let mut decisions_st = conn
        .prepare(
            "SELECT seq, input_index, verdict, reviewer, reason, decided_at_ms, dwell_ms, \
             args_hash FROM decisions WHERE request_id = ?1 ORDER BY seq",
        )
        .map_err(db(path, "reading the decisions"))?;
    while let Some(row) = rows.next().map_err(db(path, "reading the requests"))? {
        let cell = |i: usize| row.get_ref(i).map_err(db(path, "reading the requests"));
        let id = text(cell(0)?);
        let status = text(cell(1)?);
        let approvals = int(cell(2)?);
        let body = text(cell(3)?);
        let body_hash = text(cell(4)?);
        let logged = log.requests.remove(&id).unwrap_or_default();
        let at = match &logged.submitted {
            Some((seq, _)) => format!("request {id} (entry {seq})"),
            None => format!("request {id}"),
        };
        let actual_hash = sha256_hex(body.as_bytes());
        match &logged.submitted {
            None => problems.push(format!(
                "request {id}: no audit entry submitted it: the log was truncated or its entry \
                 deleted"
            )),
            Some((seq, logged_hash)) if *logged_hash != actual_hash => problems.push(format!(
                "{at}: its body does not hash to the bodyHash audit entry {seq} recorded: the \
                 request was edited"
            )),
            Some(_) => {}
        }
        if actual_hash != body_hash {
            problems.push(format!(
                "{at}: its body does not hash to its body_hash column: the request was edited"
            ));
        }
        let request = match serde_json::from_str::<ApprovalRequest>(&body) {
            Ok(r) => Some(r),
            Err(e) => {
                problems.push(format!("{at}: its body no longer parses as a request: {e}"));
                None
            }
        };
        if let Some(r) = &request {
            check_body(&id, &at, r, &body, row, problems);
        }

        let mut approvers = BTreeSet::new();
        let mut drows = decisions_st
            .query([id.as_str()])
            .map_err(db(path, "reading the decisions"))?;
        while let Some(d) = drows.next().map_err(db(path, "reading the decisions"))? {
            let fields = decision_fields(d).map_err(db(path, "reading the decisions"))?;
            if fields.get("verdict").and_then(Value::as_str) == Some("confirm") {
                approvers.insert(fields.get("reviewer").map(ToString::to_string));
            }
            check_decision(&id, &fields, request.as_ref(), log, problems);
        }
        if approvals != i64::try_from(approvers.len()).ok() {
            problems.push(format!(
                "{at}: its approvals column is {} but {} distinct reviewers confirmed it",
                text(cell(2)?),
                approvers.len()
            ));
        }
        match &logged.last_status {
            Some((said, seq)) if *said != status => problems.push(format!(
                "{at}: its status column is {status} but the last audit entry on it, entry \
                 {seq}, says {said}"
            )),
            _ => {}
        }
    }
    Ok(())
}

/// The body is the canonical JSON of the request it names, and the summary columns say what
/// the body says.
fn check_body(
    id: &str,
    at: &str,
    request: &ApprovalRequest,
    body: &str,
    row: &rusqlite::Row<'_>,
    problems: &mut Vec<String>,
) {
    if request.id.as_str() != id {
        problems.push(format!("{at}: its body is request {}", request.id));
    }
    let canonical = serde_json::to_value(request).map(|v| canonical_json(&v));
    if canonical.as_deref().ok() != Some(body) {
        problems.push(format!("{at}: its body is not in canonical form"));
    }
    let expected = Summary::of(request);
    for (i, (column, want)) in expected.columns().into_iter().enumerate() {
        debug_assert_eq!(column, REQUEST_COLUMNS[i]);
        let got = row
            .get_ref(5 + i)
            .map_or_else(|e| format!("<unreadable: {e}>"), text);
        if got != want {
            problems.push(format!(
                "{at}: its {column} column is {got} but its body says {want}"
            ));
        }
    }
}

fn decision_fields(row: &rusqlite::Row<'_>) -> Result<Value, rusqlite::Error> {
    let keys = [
        "seq",
        "inputIndex",
        "verdict",
        "reviewer",
        "reason",
        "decidedAtMs",
        "dwellMs",
        "argsHash",
    ];
    let mut map = Map::new();
    for (i, key) in keys.into_iter().enumerate() {
        map.insert(key.to_owned(), json_of(row.get_ref(i)?));
    }
    Ok(Value::Object(map))
}

/// One decision row against the entry that recorded it and the input it decided.
fn check_decision(
    id: &str,
    fields: &Value,
    request: Option<&ApprovalRequest>,
    log: &mut Log,
    problems: &mut Vec<String>,
) {
    let seq = fields
        .get("seq")
        .and_then(Value::as_i64)
        .unwrap_or_default();
    let name = format!("request {id} decision {seq}");
    match log.decisions.remove(&(id.to_owned(), seq)) {
        None => problems.push(format!(
            "{name}: no decided audit entry records it: the log was truncated or the row was \
             added outside agentdeck"
        )),
        Some(logged) if canonical_json(&logged.fields) != canonical_json(fields) => {
            let differ: Vec<String> = fields
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, v)| logged.fields.get(k.as_str()) != Some(*v))
                .map(|(k, v)| {
                    let said = logged.fields.get(k.as_str()).unwrap_or(&Value::Null);
                    format!("{k} is {v} but the entry says {said}")
                })
                .collect();
            problems.push(format!(
                "{name}: differs from audit entry {} that recorded it ({}): the decision was \
                 edited",
                logged.entry,
                differ.join("; ")
            ));
        }
        Some(_) => {}
    }
    if let Some(request) = request {
        let index = fields.get("inputIndex").and_then(Value::as_u64);
        let current = index
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| request.input_hash(i));
        match current {
            None => problems.push(format!(
                "{name}: decides input {} but the request has {} inputs",
                fields.get("inputIndex").unwrap_or(&Value::Null),
                request.inputs.len()
            )),
            Some(h) if fields.get("argsHash").and_then(Value::as_str) != Some(h.as_str()) => {
                problems.push(format!(
                    "{name}: its args_hash is not the hash of the input it decides"
                ));
            }
            Some(_) => {}
        }
    }
}

/// Decision rows whose request row is gone.
fn check_orphan_decisions(
    conn: &Connection,
    path: &str,
    log: &mut Log,
    problems: &mut Vec<String>,
) -> Result<(), StoreError> {
    let mut st = conn
        .prepare(
            "SELECT seq, input_index, verdict, reviewer, reason, decided_at_ms, dwell_ms, \
             args_hash, request_id FROM decisions \
             WHERE request_id NOT IN (SELECT id FROM requests) ORDER BY request_id, seq",
        )
        .map_err(db(path, "reading the decisions"))?;
    let mut rows = st.query([]).map_err(db(path, "reading the decisions"))?;
    while let Some(row) = rows.next().map_err(db(path, "reading the decisions"))? {
        let id = text(row.get_ref(8).map_err(db(path, "reading the decisions"))?);
        let fields = decision_fields(row).map_err(db(path, "reading the decisions"))?;
        let seq = fields
            .get("seq")
            .and_then(Value::as_i64)
            .unwrap_or_default();
        problems.push(format!(
            "request {id} decision {seq}: its request is no longer in the requests table: the \
             request was deleted"
        ));
        check_decision(&id, &fields, None, log, problems);
    }
    Ok(())
}

/// The outbox against the requests: a resume exists exactly for the runner-raised requests that
/// ended approved, rejected or mixed (never for expired or open ones, nor for others).
fn check_outbox(
    conn: &Connection,
    path: &str,
    problems: &mut Vec<String>,
) -> Result<(), StoreError> {
    let checks: [(&str, &str); 3] = [
        (
            "SELECT o.request_id, coalesce(r.status, 'missing') FROM outbox o \
             LEFT JOIN requests r ON r.id = o.request_id \
             WHERE r.status IS NULL OR r.status NOT IN ('approved', 'rejected', 'mixed') \
             ORDER BY o.request_id",
            "has an outbox row but its status is {}: only approved, rejected or mixed requests \
             are resumed",
        ),
        (
            "SELECT o.request_id, '' FROM outbox o \
             WHERE o.request_id NOT IN (SELECT request_id FROM resumable) ORDER BY o.request_id",
            "has an outbox row but the runner did not raise it{}",
        ),
        (
            "SELECT s.request_id, r.status FROM resumable s JOIN requests r ON r.id = s.request_id \
             WHERE r.status IN ('approved', 'rejected', 'mixed') \
             AND s.request_id NOT IN (SELECT request_id FROM outbox) ORDER BY s.request_id",
            "is {} and the runner raised it, but it has no outbox row: its resume was lost",
        ),
    ];
    for (sql, message) in checks {
        let found: Vec<(String, String)> = conn
            .prepare(sql)
            .and_then(|mut st| {
                st.query_map([], |r| Ok((text(r.get_ref(0)?), text(r.get_ref(1)?))))?
                    .collect()
            })
            .map_err(db(path, "reading the outbox"))?;
        for (id, detail) in found {
            problems.push(format!("request {id}: {}", message.replace("{}", &detail)));
        }
    }
    Ok(())
}
