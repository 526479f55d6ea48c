//! A trace block's raw JSON as the store keeps it (schema migration 11): LZ4-compressed, the
//! JSON's length first. A block is one turn's batch of events, and their JSON repeats itself
//! (the same prompt heads in every model call, the same keys in every event): about 3.6 times
//! smaller on the ingest bench's mix (1,145 -> 318 bytes per event). The bytes are written to
//! the WAL, copied into the database by a checkpoint and read back by it, so the store's writes
//! shrink with them, for about a microsecond of compression per event.
//!
//! The layout is lz4_flex's `compress_prepend_size`: a 4-byte little-endian length of the JSON,
//! then an LZ4 block. SQL reaches the JSON through `trace_json(raw)` (the search index is built
//! with `json_each` over it); migration 11 packs existing blocks with `trace_pack(text)`. Both
//! are registered on every connection a `SqliteStore` opens (`register`).

use rusqlite::Connection;
use rusqlite::functions::{Context, FunctionFlags};

/// The most LZ4 can expand its input: a match of any length costs one byte per 255 of it, so
/// no valid block unpacks to more than this many times its size (plus a token's worth). A
/// length prefix beyond it is damage, refused before anything is allocated for it.
const MAX_RATIO: usize = 255;

/// SQLite's own limit on a string's length (`SQLITE_MAX_LENGTH`): no block's JSON was longer.
const MAX_JSON: usize = 1_000_000_000;

/// `json` packed.
pub(super) fn pack(json: &str) -> Vec<u8> {
    let mut out = Vec::new();
    Packer::default().pack(json, &mut out);
    out
}

/// Packs blocks one after another, reusing LZ4's hash table: `compress_prepend_size` allocates
/// (and zeroes) a new one for every block, and its output at the most LZ4 could need, then
/// copies it into a smaller allocation.
#[derive(Default)]
pub(super) struct Packer {
    table: lz4_flex::block::CompressTable,
}

impl std::fmt::Debug for Packer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Packer")
    }
}

impl Packer {
    /// `json` packed into `out` (emptied first), in `compress_prepend_size`'s layout.
    pub(super) fn pack(&mut self, json: &str, out: &mut Vec<u8>) {
        // A longer text could not be stored (SQLite's limit, `MAX_JSON`), so the length always
        // fits; saturating keeps `unpack` refusing such a block rather than misreading it.
        let len = u32::try_from(json.len()).unwrap_or(u32::MAX);
        out.clear();
        out.extend_from_slice(&len.to_le_bytes());
        out.resize(4 + lz4_flex::block::get_maximum_output_size(json.len()), 0);
        match lz4_flex::block::compress_into_with_table(
            json.as_bytes(),
            &mut out[4..],
            &mut self.table,
        ) {
            Ok(n) => out.truncate(4 + n),
            // Not expected (the output has room for LZ4's largest expansion): the allocating
            // way, which cannot run out of room.
            Err(_) => *out = lz4_flex::block::compress_prepend_size(json.as_bytes()),
        }
    }
}

/// The JSON text of a packed block, or what is wrong with it.
pub(super) fn unpack(packed: &[u8]) -> Result<String, String> {
    let Some((len, block)) = packed.split_first_chunk::<4>() else {
        return Err(format!(
            "{} bytes, too short for a packed block (its length alone takes 4)",
            packed.len()
        ));
    };
    let len = usize::try_from(u32::from_le_bytes(*len)).unwrap_or(usize::MAX);
    if len > MAX_JSON || len > block.len().saturating_mul(MAX_RATIO).saturating_add(16) {
        return Err(format!(
            "it says it unpacks to {len} bytes, more than {} packed bytes can hold",
            block.len()
        ));
    }
    let mut json = vec![0u8; len];
    let n = lz4_flex::block::decompress_into(block, &mut json)
        .map_err(|e| format!("not a valid LZ4 block: {e}"))?;
    if n != len {
        return Err(format!(
            "it says it unpacks to {len} bytes, but it unpacks to {n}"
        ));
    }
    String::from_utf8(json).map_err(|e| format!("it unpacks to text that is not UTF-8: {e}"))
}

/// Registers `trace_json(blob) -> text` and `trace_pack(text) -> blob` on `conn`.
///
/// # Errors
/// What SQLite says when it refuses a function.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8
        | FunctionFlags::SQLITE_DETERMINISTIC
        | FunctionFlags::SQLITE_INNOCUOUS;
    conn.create_scalar_function("trace_json", 1, flags, |ctx: &Context<'_>| {
        let packed = ctx.get_raw(0).as_blob().map_err(|_| {
            user_error("trace_json: a trace block's raw column is not a packed block (a BLOB)")
        })?;
        unpack(packed)
            .map_err(|e| user_error(&format!("trace_json: a trace block's raw JSON: {e}")))
    })?;
    conn.create_scalar_function("trace_pack", 1, flags, |ctx: &Context<'_>| {
        let json = ctx
            .get_raw(0)
            .as_str()
            .map_err(|_| user_error("trace_pack: a trace block's raw JSON is not text"))?;
        Ok(pack(json))
    })
}

fn user_error(what: &str) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(what.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn sample() -> String {
        let event = r#"{"trace":{"orchestrationTrace":{"modelInvocationInput":{"text":"{\"system\":\"You are a payments agent. Ask before moving money.\"}","traceId":"t-1"}}}}"#;
        format!("[{}]", vec![event; 20].join(","))
    }

    #[test]
    fn a_block_comes_back_as_it_went_in_and_smaller() {
        let json = sample();
        let packed = pack(&json);
        assert!(
            packed.len() * 3 < json.len(),
            "{} -> {}",
            json.len(),
            packed.len()
        );
        assert_eq!(unpack(&packed).unwrap(), json);
        // The most repetitive text there is still unpacks (LZ4's ratio is bounded, `MAX_RATIO`).
        let long = "x".repeat(10_000_000);
        assert_eq!(unpack(&pack(&long)).unwrap(), long);
        assert_eq!(unpack(&pack("")).unwrap(), "");
        let text = "[\"non-ASCII: ünïcödé, 数字, 🚀\"]";
        assert_eq!(unpack(&pack(text)).unwrap(), text);
    }

    #[test]
    fn a_packer_reused_from_block_to_block_packs_each_as_if_alone() {
        let mut packer = Packer::default();
        let mut out = Vec::new();
        let big = format!("[{}]", vec![sample(); 200].join(","));
        assert!(big.len() > usize::from(u16::MAX), "{}", big.len());
        let texts = [
            sample(),
            "[]".to_owned(),
            sample(),
            big,
            sample(),
            String::new(),
        ];
        let mut upgraded = false;
        for text in &texts {
            packer.pack(text, &mut out);
            assert_eq!(unpack(&out).unwrap(), *text);
            upgraded |= text.len() > usize::from(u16::MAX);
            if !upgraded {
                // Until a block needs LZ4's larger table, the very bytes of a block packed alone.
                assert_eq!(out, lz4_flex::block::compress_prepend_size(text.as_bytes()));
            }
        }
    }

    #[test]
    fn damage_is_named_not_unpacked() {
        let packed = pack(&sample());
        let err = unpack(&packed[..3]).unwrap_err();
        assert!(err.contains("too short"), "{err}");
        let err = unpack(&packed[..packed.len() - 5]).unwrap_err();
        assert!(err.contains("LZ4") || err.contains("unpacks to"), "{err}");
        // A length prefix no block of this size can reach is refused before allocating it.
        let mut huge = packed.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = unpack(&huge).unwrap_err();
        assert!(err.contains("more than"), "{err}");
        // A length that is wrong but plausible.
        let mut short = packed.clone();
        let len = u32::from_le_bytes(short[..4].try_into().unwrap());
        short[..4].copy_from_slice(&(len + 7).to_le_bytes());
        assert!(unpack(&short).is_err());
        // Valid LZ4 of bytes that are not UTF-8.
        let bad = lz4_flex::block::compress_prepend_size(&[0xff, 0xfe, b'[', b']']);
        let err = unpack(&bad).unwrap_err();
        assert!(err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn sql_reaches_the_json_through_the_functions() {
        let conn = Connection::open_in_memory().unwrap();
        register(&conn).unwrap();
        let json = sample();
        let (len, back, n): (i64, String, i64) = conn
            .query_row(
                "SELECT length(trace_pack(?1)), trace_json(trace_pack(?1)), \
                 (SELECT count(*) FROM json_each(trace_json(trace_pack(?1))))",
                [&json],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert!(usize::try_from(len).unwrap() < json.len());
        assert_eq!(back, json);
        assert_eq!(n, 20);
        let err = conn
            .query_row("SELECT trace_json('[1]')", [], |r| r.get::<_, String>(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a packed block"), "{err}");
        let err = conn
            .query_row("SELECT trace_json(x'01020304ff')", [], |r| {
                r.get::<_, String>(0)
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("trace_json"), "{err}");
    }
}
