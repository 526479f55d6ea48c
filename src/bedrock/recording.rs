//! Reading traces people already have: recordings of InvokeAgent responses as boto3 returns
//! them dumped to JSON or JSONL (`{"trace": {...}}`, `{"chunk": {"bytes": ...}}`,
//! `{"returnControl": {...}}`), bare TracePart objects, and raw
//! `application/vnd.amazon.eventstream` bodies as HTTP recorders capture them.
//!
//! `Recording` reads one such file as a stream of `Record`s, a record at a time, with memory
//! bounded by the largest record (never the file; `import` keeps a few thousand in flight): JSON arrays and pretty-printed values are cut
//! into elements by a small scanner, JSONL by lines, eventstream by frames. A record that does
//! not parse is an `Item::Bad` naming its line (JSON) or byte offset (eventstream); reading goes
//! on with the next one.

use std::fmt;
use std::io::Read;

use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::{HeaderValue, Message};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::domain::trace::{RawJson, TraceEvent, TraceKind};

/// The formats a recording can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A raw `application/vnd.amazon.eventstream` body.
    Eventstream,
    /// One JSON array of events or TraceParts.
    JsonArray,
    /// One event or TracePart per line.
    Jsonl,
    /// One JSON object, or several, pretty-printed or not.
    Json,
}

impl Format {
    pub const ALL: [Self; 4] = [Self::Eventstream, Self::JsonArray, Self::Jsonl, Self::Json];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eventstream => "eventstream",
            Self::JsonArray => "json-array",
            Self::Jsonl => "jsonl",
            Self::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// Where in the file a record starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// 1-based line (JSON formats).
    Line(u64),
    /// Byte offset of the frame (eventstream).
    Offset(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(n) => write!(f, "line {n}"),
            Self::Offset(n) => write!(f, "byte {n}"),
        }
    }
}

/// One event of a recording.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A TracePart, read by the one trace reader (`TraceEvent::from_wire`).
    Trace(TraceEvent),
    /// The text of a chunk.
    Chunk(String),
    /// Another stream event (`returnControl`, `files`, or a type this version does not know):
    /// kept as a trace event of kind `unknown(<key>)` whose raw JSON is `{key: payload}`.
    Other(TraceEvent),
    /// The stream ended with an exception (eventstream exception or error frames, or a JSON
    /// `{"<name>Exception": {"message": ...}}` event).
    Exception { kind: String, message: String },
}

impl Record {
    /// An event that is not a trace, kept with its key as an unknown-kind trace event.
    fn other(key: &str, payload: Value) -> Self {
        let mut raw = Map::new();
        raw.insert(key.to_owned(), payload);
        Self::Other(TraceEvent {
            agent_id: None,
            agent_alias_id: None,
            agent_version: None,
            session_id: None,
            event_time: None,
            collaborator_name: None,
            caller_chain: Vec::new(),
            kind: TraceKind::Unknown {
                key: Some(key.to_owned()),
            },
            raw: RawJson::Value(Value::Object(raw)),
        })
    }
}

/// What reading a recording yields (moved once to the importer, never stored).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Item {
    Good(Record, Location),
    /// A record that was rejected; the ones after it are still read.
    Bad(Location, String),
}

/// How `{"chunk": {"bytes": "..."}}` strings in JSON recordings are read. On the wire chunk
/// bytes are always base64; a JSON dump of boto3's response holds whatever the dumper made of
/// Python `bytes`: base64 (a custom encoder), the text itself (`.decode()`), or its `repr`
/// (`default=str`, `"b'...'"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkBytes {
    /// `b'...'` is unescaped; a string that is canonical base64 of UTF-8 text is decoded, other
    /// strings are the text. The first string that proves the file's choice (text that is not
    /// base64, or base64 that decodes to text with whitespace) settles it for the rest.
    Auto,
    Base64,
    Text,
}

/// A single record larger than this is refused (a recorder's frames are at most 16 MiB).
pub const MAX_RECORD: usize = 64 << 20;
/// The eventstream format's frame limit.
const MAX_FRAME: usize = 16 << 20;
const READ_SIZE: usize = 1 << 20;

/// A recording being read.
#[derive(Debug)]
#[allow(clippy::struct_excessive_bools)]
pub struct Recording<R> {
    input: R,
    /// What is being read (after a JSON array's `]`, JSON values).
    mode: Format,
    /// The format the file is in.
    format: Format,
    chunks: ChunkBytes,
    buf: Vec<u8>,
    /// Unread bytes are `buf[pos..]`.
    pos: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    /// Line of `buf[pos]` (JSON formats).
    line: u64,
    /// JsonArray: the opening `[` was read; the closing `]` was read.
    opened: bool,
    closed: bool,
    /// The bytes of the last record returned (until the next call).
    last: (usize, usize),
    failed: bool,
}

/// A valid eventstream prelude at the start of `b`: (total length, headers length).
fn prelude(b: &[u8]) -> Option<(usize, usize)> {
    let b = b.get(..12)?;
    let total = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let headers = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
    let crc = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
    (crc32fast::hash(&b[..8]) == crc && (16..=MAX_FRAME).contains(&total) && headers + 16 <= total)
        .then_some((total, headers))
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// serde_json's message without its position (we say where, relative to the file).
fn json_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    s.strip_suffix(&suffix)
        .map_or_else(|| s.clone(), str::to_owned)
}

impl<R: Read> Recording<R> {
    /// Reads `input` as `format`, or as the format its first bytes show (`sniff`).
    pub fn new(input: R, format: Option<Format>, chunks: ChunkBytes) -> std::io::Result<Self> {
        let mut r = Self {
            input,
            mode: Format::Json,
            format: Format::Json,
            chunks,
            buf: Vec::with_capacity(READ_SIZE),
            pos: 0,
            base: 0,
            eof: false,
            line: 1,
            opened: false,
            closed: false,
            last: (0, 0),
            failed: false,
        };
        r.mode = match format {
            Some(f) => f,
            None => r.sniff()?,
        };
        r.format = r.mode;
        Ok(r)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Bytes consumed so far (for a progress bar).
    pub fn position(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The bytes the last good record was read from: its JSON, or its frame's payload.
    pub fn last_bytes(&self) -> &[u8] {
        self.buf.get(self.last.0..self.last.1).unwrap_or_default()
    }

    /// Reads more input; false at the end of the file.
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.last = (0, 0);
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_SIZE, 0);
        let n = loop {
            match self.input.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(old + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }

    /// Makes at least `n` unread bytes available if the file has them.
    fn want(&mut self, n: usize) -> std::io::Result<bool> {
        while self.buf.len() - self.pos < n {
            if !self.fill()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn sniff(&mut self) -> std::io::Result<Format> {
        self.want(12)?;
        if prelude(&self.buf[self.pos..]).is_some() {
            return Ok(Format::Eventstream);
        }
        if self.buf[self.pos..].starts_with(b"\xEF\xBB\xBF") {
            self.pos += 3;
        }
        // The first non-blank byte: `[` is an array; otherwise the first value decides between
        // JSONL (it fits on its line) and pretty-printed JSON.
        let mut rel = 0;
        loop {
            let Some(&b) = self.buf.get(self.pos + rel) else {
                if !self.fill()? {
                    return Ok(Format::Jsonl);
                }
                continue;
            };
            if b == b'[' {
                return Ok(Format::JsonArray);
            }
            if !is_ws(b) {
                break;
            }
            rel += 1;
        }
        let mut scan = Scan::default();
        loop {
            let start = self.pos + rel;
            if let Some(end) = scan.run(&self.buf[start..], true) {
                let newline = self.buf[start..start + end].contains(&b'\n');
                return Ok(if newline { Format::Json } else { Format::Jsonl });
            }
            if self.buf.len() - start > MAX_RECORD || !self.fill()? {
                return Ok(Format::Jsonl);
            }
        }
    }

    /// The next record, `None` at the end of the file. An I/O error ends the file.
    pub fn next_item(&mut self) -> std::io::Result<Option<Item>> {
        if self.failed {
            return Ok(None);
        }
        match self.mode {
            Format::Eventstream => self.next_frame(),
            Format::Jsonl => self.next_line(),
            Format::JsonArray | Format::Json => self.next_value(),
        }
    }

    fn next_line(&mut self) -> std::io::Result<Option<Item>> {
        loop {
            let mut searched = self.pos;
            let end = loop {
                if let Some(i) = memchr::memchr(b'\n', &self.buf[searched..]) {
                    break Some(searched + i);
                }
                if self.buf.len() - self.pos > MAX_RECORD {
                    break None;
                }
                // Nothing unread holds a newline: search only what the next read brings.
                let unread = self.buf.len() - self.pos;
                if !self.fill()? {
                    break Some(self.buf.len());
                }
                searched = self.pos + unread;
            };
            let line = self.line;
            self.line += 1;
            let Some(end) = end else {
                // Skip the oversized line to its end.
                self.skip_to_newline()?;
                return Ok(Some(Item::Bad(
                    Location::Line(line),
                    format!("a line longer than {} MiB", MAX_RECORD >> 20),
                )));
            };
            let start = self.pos;
            self.pos = (end + 1).min(self.buf.len());
            let text = trim(&self.buf[start..end]);
            if text.0 == text.1 {
                if end >= self.buf.len() && self.eof {
                    return Ok(None);
                }
                continue;
            }
            let (s, e) = (start + text.0, start + text.1);
            return Ok(Some(self.parse_json(s, e, line)));
        }
    }

    fn skip_to_newline(&mut self) -> std::io::Result<()> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.pos..]) {
                self.pos += i + 1;
                return Ok(());
            }
            self.pos = self.buf.len();
            if !self.fill()? {
                return Ok(());
            }
        }
    }

    /// The next element of the array, or the next top-level value.
    fn next_value(&mut self) -> std::io::Result<Option<Item>> {
        let array = self.mode == Format::JsonArray;
        loop {
            // Skip blanks (and separators between array elements), counting lines.
            loop {
                if self.pos >= self.buf.len() && !self.fill()? {
                    if array && self.opened && !self.closed {
                        self.failed = true;
                        return Ok(Some(Item::Bad(
                            Location::Line(self.line),
                            "the file ends inside the array (no closing `]`)".to_owned(),
                        )));
                    }
                    return Ok(None);
                }
                let b = self.buf[self.pos];
                if b == b'\n' {
                    self.line += 1;
                } else if !(is_ws(b) || (array && self.opened && b == b',')) {
                    break;
                }
                self.pos += 1;
            }
            let b = self.buf[self.pos];
            if array && !self.opened {
                if b != b'[' {
                    self.failed = true;
                    return Ok(Some(Item::Bad(
                        Location::Line(self.line),
                        "expected a JSON array (`[`)".to_owned(),
                    )));
                }
                self.opened = true;
                self.pos += 1;
                continue;
            }
            if array && b == b']' {
                self.closed = true;
                self.pos += 1;
                // Anything after the array is more values.
                self.mode = Format::Json;
                self.opened = false;
                continue;
            }
            let line = self.line;
            let mut scan = Scan::default();
            let end = loop {
                if let Some(end) = scan.run(&self.buf[self.pos..], !array) {
                    break Some(self.pos + end);
                }
                if self.buf.len() - self.pos > MAX_RECORD {
                    self.failed = true;
                    return Ok(Some(Item::Bad(
                        Location::Line(line),
                        format!("a value larger than {} MiB", MAX_RECORD >> 20),
                    )));
                }
                // The scanner resumes where it stopped: its offsets are relative to `pos`.
                if !self.fill()? {
                    break None;
                }
            };
            let Some(end) = end else {
                // The file ended: the last value is what is left (a truncated value fails to
                // parse and is reported; no `]` is an error of its own for arrays).
                let start = self.pos;
                let stop = self.buf.len();
                self.line += scan.lines;
                self.pos = stop;
                let (s, e) = trim(&self.buf[start..stop]);
                if s == e {
                    continue;
                }
                let item = self.parse_json(start + s, start + e, line);
                if array {
                    self.failed = true;
                    return Ok(Some(match item {
                        Item::Good(..) => Item::Bad(
                            Location::Line(self.line),
                            "the file ends inside the array (no closing `]`)".to_owned(),
                        ),
                        bad @ Item::Bad(..) => bad,
                    }));
                }
                return Ok(Some(item));
            };
            let start = self.pos;
            self.line += scan.lines;
            self.pos = end;
            let (s, e) = trim(&self.buf[start..end]);
            return Ok(Some(self.parse_json(start + s, start + e, line)));
        }
    }

    fn parse_json(&mut self, start: usize, end: usize, line: u64) -> Item {
        self.last = (start, end);
        let text = &self.buf[start..end];
        match serde_json::from_slice::<Value>(text) {
            Ok(v) => match classify(v, text, &mut self.chunks) {
                Ok(r) => Item::Good(r, Location::Line(line)),
                Err(e) => Item::Bad(Location::Line(line), e),
            },
            Err(e) => Item::Bad(
                Location::Line(line + e.line().saturating_sub(1) as u64),
                json_message(&e),
            ),
        }
    }

    fn next_frame(&mut self) -> std::io::Result<Option<Item>> {
        if !self.want(1)? {
            return Ok(None);
        }
        let offset = self.position();
        if !self.want(12)? {
            let n = self.buf.len() - self.pos;
            self.pos = self.buf.len();
            return Ok(Some(Item::Bad(
                Location::Offset(offset),
                format!("{n} trailing byte(s): the body ends inside a frame's prelude"),
            )));
        }
        let Some((total, _)) = prelude(&self.buf[self.pos..]) else {
            // Not a frame: find the next valid prelude and go on from there.
            let skipped = self.resync()?;
            return Ok(Some(Item::Bad(
                Location::Offset(offset),
                format!("not an event-stream frame (bad prelude); skipped {skipped} byte(s)"),
            )));
        };
        if !self.want(total)? {
            let n = self.buf.len() - self.pos;
            self.pos = self.buf.len();
            return Ok(Some(Item::Bad(
                Location::Offset(offset),
                format!("the body ends inside a frame ({n} of its {total} bytes)"),
            )));
        }
        let frame = &self.buf[self.pos..self.pos + total];
        let decoded = read_message_from(frame);
        let start = self.pos;
        self.pos += total;
        let message = match decoded {
            Ok(m) => m,
            Err(e) => return Ok(Some(Item::Bad(Location::Offset(offset), e.to_string()))),
        };
        let payload_at = start + total - 4 - message.payload().len();
        self.last = (payload_at, start + total - 4);
        Ok(Some(match frame_record(&message) {
            Ok(r) => Item::Good(r, Location::Offset(offset)),
            Err(e) => Item::Bad(Location::Offset(offset), e),
        }))
    }

    /// Skips to the next offset holding a valid prelude (or the end); how many bytes it skipped.
    fn resync(&mut self) -> std::io::Result<u64> {
        let from = self.position();
        self.pos += 1;
        loop {
            if !self.want(12)? {
                self.pos = self.buf.len();
                return Ok(self.position() - from);
            }
            if prelude(&self.buf[self.pos..]).is_some() {
                return Ok(self.position() - from);
            }
            self.pos += 1;
        }
    }
}

/// The non-blank span of `b`.
fn trim(b: &[u8]) -> (usize, usize) {
    let s = b.iter().position(|&c| !is_ws(c)).unwrap_or(b.len());
    let e = b.iter().rposition(|&c| !is_ws(c)).map_or(s, |i| i + 1);
    (s, e.max(s))
}

/// Finds where one JSON value ends, across calls as more bytes arrive. Offsets are relative to
/// the start of the value.
#[derive(Debug, Default)]
struct Scan {
    /// Bytes of the value already scanned.
    at: usize,
    depth: u32,
    in_string: bool,
    started: bool,
    /// Newlines met so far.
    lines: u64,
}

impl Scan {
    /// The end of the value (exclusive) in `b`, or `None` if `b` ends first. `top` says the
    /// value is top-level (it ends when its brackets close); otherwise it is an array element
    /// (it ends before a `,` or `]` at its own level).
    fn run(&mut self, b: &[u8], top: bool) -> Option<usize> {
        let mut i = self.at;
        while i < b.len() {
            if self.in_string {
                match memchr::memchr3(b'"', b'\\', b'\n', &b[i..]) {
                    None => {
                        i = b.len();
                        break;
                    }
                    Some(k) => {
                        i += k;
                        match b[i] {
                            b'"' => {
                                self.in_string = false;
                                i += 1;
                            }
                            b'\\' => {
                                if i + 1 >= b.len() {
                                    break;
                                }
                                i += 2;
                            }
                            _ => {
                                self.lines += 1;
                                i += 1;
                            }
                        }
                    }
                }
                continue;
            }
            match b[i] {
                b'"' => {
                    self.in_string = true;
                    self.started = true;
                }
                b'{' | b'[' => {
                    self.depth += 1;
                    self.started = true;
                }
                b'}' | b']' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 && top {
                        self.at = i + 1;
                        return Some(i + 1);
                    }
                }
                b']' | b',' if self.depth == 0 && !top => {
                    self.at = i;
                    return Some(i);
                }
                b'\n' => {
                    self.lines += 1;
                    if top && self.started && self.depth == 0 {
                        // A bare scalar (or garbage) at the top ends with its line.
                        self.at = i;
                        return Some(i);
                    }
                }
                c if !is_ws(c) => self.started = true,
                _ => {}
            }
            i += 1;
        }
        self.at = i;
        None
    }
}

/// Is `key` a stream exception's name (`throttlingException`, ...)?
fn is_exception(key: &str) -> bool {
    key.ends_with("Exception")
}

/// What a JSON record is: a boto3 stream event (`{"trace": TracePart}`, `{"chunk": ...}`,
/// `{"returnControl": ...}`, any other single-member event) or a bare TracePart (an object with
/// a `trace` member among others, or only `{"trace": {"orchestrationTrace": ...}}`).
///
/// `text` is the record's JSON: a trace event keeps the text of its TracePart (see `RawText`).
fn classify(v: Value, text: &[u8], chunks: &mut ChunkBytes) -> Result<Record, String> {
    let Value::Object(mut m) = v else {
        return Err(format!(
            "expected an object (a stream event or a TracePart), found {}",
            kind_of(&v)
        ));
    };
    if m.len() == 1 {
        let key = m.keys().next().cloned().unwrap_or_default();
        let is_object = m.get(&key).is_some_and(Value::is_object);
        if key == "trace" && is_object {
            // `{"trace": TracePart}` (boto3) holds a part with its own `trace`; otherwise the
            // object is a TracePart with nothing but its trace union.
            if m.get("trace").and_then(|p| p.get("trace")).is_some() {
                let part = m.remove("trace").unwrap_or_default();
                return Ok(Record::Trace(match only_member(text, "trace") {
                    Some(inner) => TraceEvent::from_wire_text(part, inner),
                    None => TraceEvent::from_wire(part),
                }));
            }
            return Ok(Record::Trace(TraceEvent::from_wire_text(
                Value::Object(m),
                text,
            )));
        }
        if key == "chunk" && is_object {
            let chunk = m.remove("chunk").unwrap_or_default();
            return chunk_text(&chunk, chunks).map(Record::Chunk);
        }
        if is_exception(&key) && is_object {
            let message = m
                .get(&key)
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            return Ok(Record::Exception { kind: key, message });
        }
        if is_object {
            let payload = m.remove(&key).unwrap_or_default();
            return Ok(Record::other(&key, payload));
        }
    }
    if m.get("trace").is_some_and(Value::is_object) {
        return Ok(Record::Trace(TraceEvent::from_wire_text(
            Value::Object(m),
            text,
        )));
    }
    let keys: Vec<&str> = m.keys().map(String::as_str).take(8).collect();
    Err(format!(
        "neither a stream event ({{\"trace\": ...}}, {{\"chunk\": ...}}, {{\"returnControl\": \
         ...}}) nor a TracePart (an object with a \"trace\" member); its keys: {}",
        if keys.is_empty() {
            "none".to_owned()
        } else {
            keys.join(", ")
        }
    ))
}

/// The text of the value of `{"<key>": value}`, the JSON text of an object with that one
/// member (already parsed, so well formed), when the key is written plainly.
fn only_member<'t>(text: &'t [u8], key: &str) -> Option<&'t [u8]> {
    let ws = |b: &&u8| is_ws(**b);
    let skip = |t: &'t [u8]| -> &'t [u8] {
        let n = t.iter().take_while(ws).count();
        &t[n..]
    };
    let t = skip(text).strip_prefix(b"{")?;
    let t = skip(t).strip_prefix(b"\"")?;
    let t = t.strip_prefix(key.as_bytes())?.strip_prefix(b"\"")?;
    let t = skip(t).strip_prefix(b":")?;
    let t = skip(t);
    let end = t.len() - t.iter().rev().take_while(ws).count();
    let t = t[..end].strip_suffix(b"}")?;
    let end = t.len() - t.iter().rev().take_while(ws).count();
    Some(&t[..end])
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Python's `repr` of bytes, `b'...'` or `b"..."`, back to its bytes.
fn python_bytes(s: &str) -> Option<Vec<u8>> {
    let body = s
        .strip_prefix("b'")
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| s.strip_prefix("b\"").and_then(|r| r.strip_suffix('"')))?;
    let mut out = Vec::with_capacity(body.len());
    let b = body.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = *b.get(i + 1)?;
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'\\' | b'\'' | b'"' => out.push(c),
            b'x' => {
                let hex = std::str::from_utf8(b.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Canonical base64 of UTF-8 text: the text.
fn base64_text(s: &str) -> Option<String> {
    if s.is_empty() || s.len() % 4 != 0 {
        return None;
    }
    let bytes = STANDARD.decode(s).ok()?;
    String::from_utf8(bytes).ok()
}

fn utf8(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| format!("chunk bytes are not UTF-8 text: {e}"))
}

/// The text of a chunk payload `{"bytes": ..., "attribution": ...}` (see `ChunkBytes`).
fn chunk_text(chunk: &Value, mode: &mut ChunkBytes) -> Result<String, String> {
    match chunk.get("bytes") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::Array(items)) => {
            let bytes: Option<Vec<u8>> = items
                .iter()
                .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            utf8(bytes.ok_or("chunk bytes: an array that is not of bytes (0-255)")?)
        }
        Some(Value::String(s)) => match *mode {
            ChunkBytes::Text => Ok(s.clone()),
            ChunkBytes::Base64 => {
                let bytes = STANDARD
                    .decode(s)
                    .map_err(|e| format!("chunk bytes are not base64 (--chunk-bytes): {e}"))?;
                utf8(bytes)
            }
            ChunkBytes::Auto => {
                if let Some(bytes) = python_bytes(s) {
                    return utf8(bytes);
                }
                if let Some(text) = base64_text(s) {
                    if text.chars().any(char::is_whitespace) {
                        *mode = ChunkBytes::Base64;
                    }
                    return Ok(text);
                }
                *mode = ChunkBytes::Text;
                Ok(s.clone())
            }
        },
        Some(other) => Err(format!(
            "chunk bytes: expected a string or an array, found {}",
            kind_of(other)
        )),
    }
}

fn header<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    m.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

/// What one eventstream frame carries.
fn frame_record(m: &Message) -> Result<Record, String> {
    let json = || {
        serde_json::from_slice::<Value>(m.payload()).map_err(|e| {
            format!(
                "the frame's JSON payload does not parse: {}",
                json_message(&e)
            )
        })
    };
    match header(m, ":message-type") {
        Some("event") => {}
        Some("exception") => {
            let kind = header(m, ":exception-type")
                .unwrap_or("exception")
                .to_owned();
            let message = json()
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            return Ok(Record::Exception { kind, message });
        }
        Some("error") => {
            return Ok(Record::Exception {
                kind: header(m, ":error-code").unwrap_or("error").to_owned(),
                message: header(m, ":error-message").unwrap_or_default().to_owned(),
            });
        }
        other => {
            return Err(format!(
                "a frame whose :message-type is {}",
                other.map_or_else(|| "missing".to_owned(), |t| format!("{t:?}"))
            ));
        }
    }
    let Some(event_type) = header(m, ":event-type") else {
        return Err("an event frame without :event-type".to_owned());
    };
    let payload = json()?;
    match event_type {
        "trace" => Ok(Record::Trace(TraceEvent::from_wire_text(
            payload,
            m.payload(),
        ))),
        // On the wire a chunk's bytes are base64, whatever a JSON dump would hold.
        "chunk" => chunk_text(&payload, &mut ChunkBytes::Base64).map(Record::Chunk),
        other => Ok(Record::other(other, payload)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    type Seen = Result<Location, (Location, String)>;

    fn read(bytes: &[u8]) -> (Format, Vec<Seen>) {
        let mut r = Recording::new(bytes, None, ChunkBytes::Auto).unwrap();
        let mut out = Vec::new();
        while let Some(item) = r.next_item().unwrap() {
            out.push(match item {
                Item::Good(_, at) => Ok(at),
                Item::Bad(at, e) => Err((at, e)),
            });
        }
        (r.format(), out)
    }

    fn raw_texts(bytes: &[u8]) -> Vec<Option<String>> {
        let mut r = Recording::new(bytes, None, ChunkBytes::Auto).unwrap();
        let mut out = Vec::new();
        while let Some(item) = r.next_item().unwrap() {
            if let Item::Good(Record::Trace(e), _) = item {
                if let Some(t) = e.raw.text() {
                    // The kept text reads as the same event.
                    assert_eq!(
                        TraceEvent::from_wire(serde_json::from_str::<Value>(t).unwrap()),
                        e
                    );
                }
                out.push(e.raw.text().map(str::to_owned));
            }
        }
        out
    }

    #[test]
    fn trace_events_keep_the_text_of_their_trace_part() {
        let part =
            r#"{"sessionId":"s","trace":{"failureTrace":{"traceId":"t","failureReason":"x}"}}}"#;
        let lines = format!(
            "{{\"trace\":{part}}}\n{{ \"trace\" :  {part} \t}}\n{part}\n{{\"tr\\u0061ce\":{part}}}\n"
        );
        assert_eq!(
            raw_texts(lines.as_bytes()),
            vec![
                Some(part.to_owned()),
                Some(part.to_owned()),
                Some(part.to_owned()),
                // An escaped key is read, and its part serialised again when stored.
                None,
            ]
        );
        // Pretty-printed records are stored compact, from their value.
        let pretty = serde_json::to_string_pretty(&serde_json::json!({"trace":
            serde_json::from_str::<Value>(part).unwrap()}))
        .unwrap();
        assert_eq!(raw_texts(pretty.as_bytes()), vec![None]);
    }

    #[test]
    fn the_scanner_ignores_brackets_and_quotes_inside_strings() {
        let text = "[{\"chunk\": {\"bytes\": \"]},\\\"[{\"}},\n {\"chunk\": {\"bytes\": \"x\"}}\n]";
        let (format, items) = read(text.as_bytes());
        assert_eq!(format, Format::JsonArray);
        assert_eq!(items, [Ok(Location::Line(1)), Ok(Location::Line(2))]);
        // Pretty-printed objects one after another, then a bad one.
        let text = "{\n \"chunk\": {\"bytes\": \"a\"}\n}\n{\n \"chunk\": 5\n}\n";
        let (format, items) = read(text.as_bytes());
        assert_eq!(format, Format::Json);
        assert_eq!(items[0], Ok(Location::Line(1)));
        assert!(
            matches!(&items[1], Err((Location::Line(4), _))),
            "{items:?}"
        );
        // An array without its `]` is reported.
        let (_, items) = read(b"[{\"chunk\": {}},\n{\"chunk\": {}}");
        assert!(
            matches!(&items[..], [Ok(_), Err((_, e))] if e.contains("no closing")),
            "{items:?}"
        );
    }

    #[test]
    fn python_repr_bytes_unescape() {
        assert_eq!(
            python_bytes(r"b'it\'s \xc3\xa9\n'").unwrap(),
            "it's é\n".as_bytes()
        );
        assert_eq!(python_bytes("plain"), None);
    }

    #[test]
    fn auto_chunk_bytes_settle_on_proof() {
        let mut mode = ChunkBytes::Auto;
        let b64 = serde_json::json!({ "bytes": STANDARD.encode("two words") });
        assert_eq!(chunk_text(&b64, &mut mode).unwrap(), "two words");
        assert_eq!(mode, ChunkBytes::Base64);
        let mut mode = ChunkBytes::Auto;
        let text = serde_json::json!({ "bytes": "plain text!" });
        assert_eq!(chunk_text(&text, &mut mode).unwrap(), "plain text!");
        assert_eq!(mode, ChunkBytes::Text);
        // Once text is proven, a string that happens to be base64 stays text.
        let word = serde_json::json!({ "bytes": "Okay" });
        assert_eq!(chunk_text(&word, &mut mode).unwrap(), "Okay");
    }
}
