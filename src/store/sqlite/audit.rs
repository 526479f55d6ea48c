//! The hash-chained audit log: how an entry's hash is computed, appending inside a write
//! transaction, and reading entries back. Checking the log against the tables lives in `verify`.

use rusqlite::{Connection, OptionalExtension, Row};
use serde_json::Value;

use crate::domain::approval::ApprovalId;
use crate::domain::canonical::canonical_json;
use crate::store::{AuditEntry, StoreError};

pub(super) use crate::store::chain::{GENESIS, entry_hash};

/// Appends one entry after the current last one; call inside the write transaction that makes
/// the change it records. Returns the entry's seq.
pub(super) fn append(
    conn: &Connection,
    path: &str,
    at_ms: i64,
    actor: &str,
    kind: &str,
    request: &ApprovalId,
    payload: &Value,
) -> Result<i64, StoreError> {
    let err = |e: rusqlite::Error| super::db_error(path, "appending to the audit log", &e);
    let last: Option<(i64, String)> = conn
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        .and_then(|mut st| st.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(err)?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_owned()),
    };
    let payload = canonical_json(payload);
    let hash = entry_hash(
        &prev_hash,
        seq,
        at_ms,
        actor,
        kind,
        request.as_str(),
        &payload,
    );
    conn.prepare_cached(
        "INSERT INTO audit (seq, at_ms, actor, kind, request_id, payload, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut st| {
        st.execute(rusqlite::params![
            seq,
            at_ms,
            actor,
            kind,
            request.as_str(),
            payload,
            prev_hash,
            hash
        ])
    })
    .map_err(err)?;
    Ok(seq)
}

pub(super) const ENTRY_COLUMNS: &str =
    "seq, at_ms, actor, kind, request_id, payload, prev_hash, hash";

/// An entry from the columns named in `ENTRY_COLUMNS`.
pub(super) fn entry(row: &Row<'_>) -> Result<AuditEntry, StoreError> {
    let get = |e: rusqlite::Error| StoreError::Corrupt(format!("reading an audit entry: {e}"));
    let seq: i64 = row.get(0).map_err(get)?;
    let at_ms: i64 = row.get(1).map_err(get)?;
    Ok(AuditEntry {
        seq: u64::try_from(seq)
            .map_err(|_| StoreError::Corrupt(format!("audit entry with negative seq {seq}")))?,
        at: super::schema::from_ms(at_ms, &format!("audit entry {seq}"))?,
        actor: row.get(2).map_err(get)?,
        kind: row.get(3).map_err(get)?,
        request: ApprovalId(row.get(4).map_err(get)?),
        payload: row.get(5).map_err(get)?,
        prev_hash: row.get(6).map_err(get)?,
        hash: row.get(7).map_err(get)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_boundaries_change_the_hash() {
        let a = entry_hash(GENESIS, 1, 5, "ab", "c", "r", "{}");
        let b = entry_hash(GENESIS, 1, 5, "a", "bc", "r", "{}");
        assert_ne!(a, b);
        assert_eq!(a, entry_hash(GENESIS, 1, 5, "ab", "c", "r", "{}"));
        assert_eq!(a.len(), 64);
    }
}
