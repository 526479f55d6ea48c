//! Compact JSON written straight into a `String`, as serde_json would write the same object with
//! its keys in sorted order (`Map` without `preserve_order`): for the runner's raw JSON of each
//! trace event and the simulator's largest frames, which are kilobytes of prompt each. Building
//! a `serde_json::Value` first and serialising it cost an allocation per member and a second
//! pass; serde_json's own string escaping goes a byte at a time.

use std::fmt::Write as _;

/// How serde_json escapes each byte of a string: 0 not at all, `u` as `\\u00XX`, else a
/// backslash and that character.
static ESCAPE: [u8; 256] = {
    let mut t = [0_u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Where the first byte at or after `from` that JSON escapes is (`bytes.len()` if none). Eight
/// bytes are checked at a time for a control character, a quote or a backslash: prompts and
/// model outputs run to kilobytes, and a byte at a time this loop was the runner's largest cost
/// of its own per event. The word tests can flag a byte after a real match (a borrow carries
/// into the byte above), never one before it, so the lowest flagged byte is the first match;
/// prompts that are themselves JSON have an escape every few bytes, which is why that byte is
/// taken from the flags rather than looked for again one byte at a time.
fn next_escape(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut i = from;
    while let Some(Ok(word)) = bytes.get(i..i + 8).map(<[u8; 8]>::try_from) {
        let x = u64::from_le_bytes(word);
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let quote = has_zero(x ^ (ONES * u64::from(b'"')));
        let backslash = has_zero(x ^ (ONES * u64::from(b'\\')));
        let flagged = control | quote | backslash;
        if flagged != 0 {
            // Little-endian: the word's first byte is its lowest.
            return i + (flagged.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while bytes.get(i).is_some_and(|&b| ESCAPE[usize::from(b)] == 0) {
        i += 1;
    }
    i
}

/// Compact JSON written as it goes. Each object's keys must be written in sorted order (as
/// serde_json's `Map` orders them), which every writer below does by hand.
#[derive(Debug)]
pub struct JsonText {
    buf: String,
    /// No member has been written in the object or array just opened.
    first: bool,
}

impl JsonText {
    /// An empty text with room for `capacity` bytes.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: String::with_capacity(capacity),
            first: true,
        }
    }

    /// What has been written.
    #[must_use]
    pub fn into_string(self) -> String {
        self.buf
    }

    /// Appends `text` as it is: JSON its caller vouches for (a bracket, or a value already
    /// written as JSON).
    pub fn raw(&mut self, text: &str) {
        self.buf.push_str(text);
    }

    /// The text so far, for a writer that appends JSON of its own (`raw`).
    pub fn buf_mut(&mut self) -> &mut String {
        &mut self.buf
    }

    fn sep(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.buf.push(',');
        }
    }

    pub fn key(&mut self, k: &str) {
        self.sep();
        self.buf.push('"');
        self.buf.push_str(k);
        self.buf.push_str("\":");
    }

    /// A JSON string, escaped as serde_json escapes it.
    pub fn string(&mut self, s: &str) {
        self.buf.reserve(s.len() + 2);
        self.buf.push('"');
        self.string_contents(s);
        self.buf.push('"');
    }

    /// `s` escaped as inside a JSON string, without the quotes around it: for a string written
    /// in parts, or escaped once and kept.
    pub fn string_contents(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let mut start = 0;
        loop {
            let i = next_escape(bytes, start);
            // Escaped bytes are ASCII, so `i` is on a character boundary.
            self.buf.push_str(&s[start..i]);
            let Some(&b) = bytes.get(i) else { break };
            match ESCAPE[usize::from(b)] {
                b'u' => {
                    let _ = write!(self.buf, "\\u{b:04x}");
                }
                e => {
                    self.buf.push('\\');
                    self.buf.push(char::from(e));
                }
            }
            start = i + 1;
        }
    }

    pub fn s(&mut self, k: &str, v: Option<&str>) -> &mut Self {
        if let Some(v) = v {
            self.key(k);
            self.string(v);
        }
        self
    }

    pub fn int(&mut self, k: &str, v: Option<i64>) -> &mut Self {
        if let Some(v) = v {
            self.key(k);
            let _ = write!(self.buf, "{v}");
        }
        self
    }

    pub fn uint(&mut self, k: &str, v: Option<u64>) -> &mut Self {
        if let Some(v) = v {
            self.key(k);
            let _ = write!(self.buf, "{v}");
        }
        self
    }

    pub fn bool(&mut self, k: &str, v: Option<bool>) -> &mut Self {
        if let Some(v) = v {
            self.key(k);
            self.buf.push_str(if v { "true" } else { "false" });
        }
        self
    }

    /// `{...}` under `k` when `v` is there, its members written by `f`.
    pub fn obj<T>(&mut self, k: &str, v: Option<T>, f: impl FnOnce(&mut Self, T)) -> &mut Self {
        if let Some(v) = v {
            self.key(k);
            self.object(|o| f(o, v));
        }
        self
    }

    pub fn object<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        self.buf.push('{');
        self.first = true;
        let read = f(self);
        self.buf.push('}');
        self.first = false;
        read
    }

    /// `[...]` under `k`, left out when empty; each item an object written by `f`.
    pub fn list<T>(&mut self, k: &str, items: &[T], f: impl Fn(&mut Self, &T)) -> &mut Self {
        if items.is_empty() {
            return self;
        }
        self.key(k);
        self.buf.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.buf.push(',');
            }
            self.object(|o| f(o, item));
        }
        self.buf.push(']');
        self.first = false;
        self
    }

    /// A value built by `wire` (small, rare parts), written in place.
    pub fn val(&mut self, k: &str, v: Option<&serde_json::Value>) -> &mut Self {
        if let Some(v) = v {
            self.key(k);
            self.value(v);
        }
        self
    }

    /// A member of the object being written whose key may need escaping (a key from a map),
    /// and its value (`value`).
    pub fn member(&mut self, k: &str, v: &serde_json::Value) {
        self.sep();
        self.string(k);
        self.buf.push(':');
        self.value(v);
    }

    /// Any JSON value, as serde_json writes it (an object's keys in its map's order, sorted
    /// without `preserve_order`), its strings and keys escaped by `string`: serde_json's own
    /// writer escapes a byte at a time.
    pub fn value(&mut self, v: &serde_json::Value) {
        use serde_json::Value;
        match v {
            Value::Null => self.buf.push_str("null"),
            Value::Bool(b) => self.buf.push_str(if *b { "true" } else { "false" }),
            // serde_json's Display of a number is its serializer's text (itoa, ryu).
            Value::Number(n) => {
                let _ = write!(self.buf, "{n}");
            }
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                self.buf.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(',');
                    }
                    self.value(item);
                }
                self.buf.push(']');
            }
            Value::Object(members) => self.object(|o| {
                for (k, item) in members {
                    o.member(k, item);
                }
            }),
        }
        self.first = false;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::JsonText;

    fn written(s: &str) -> String {
        let mut o = JsonText::with_capacity(0);
        o.string(s);
        o.into_string()
    }

    /// Every byte serde_json escapes, at every offset in and across the eight-byte words the
    /// scan checks at once, beside multi-byte characters and bytes that only look close
    /// (0x20, 0x7f, 0xa2, 0xdc), comes out as serde_json writes it.
    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let specials = [
            '\0', '\u{1}', '\u{8}', '\t', '\n', '\u{c}', '\r', '\u{1f}', '"', '\\',
        ];
        let fillers = [
            "", "a", "abcdefg", "é", "日本", "\u{7f}", " ", "¢ü", "\u{202e}",
        ];
        let mut cases = vec![String::new(), "plain text that needs nothing".repeat(3)];
        for pad in 0..17 {
            for c in specials {
                for f in fillers {
                    let mut s = "x".repeat(pad);
                    s.push(c);
                    s.push_str(f);
                    s.push_str(&"y".repeat(pad % 9));
                    s.push(c);
                    cases.push(s);
                }
            }
        }
        cases.push("\"\\\"\\".repeat(20));
        // A match with a byte just above it that a borrow could flag (space, '#', ']'), or
        // just miss ('!').
        for pad in 0..9 {
            for c in specials {
                for next in [' ', '!', '#', ']', '\u{0}'] {
                    cases.push(format!("{}{c}{next}{}", "z".repeat(pad), "z".repeat(8)));
                }
            }
        }
        cases.push("\u{0}".repeat(33));
        for s in &cases {
            assert_eq!(written(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    /// Every kind of value, nested, with keys and strings that need escaping and numbers of
    /// every kind, comes out as serde_json writes it; beside other members too.
    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        let values = [
            serde_json::json!(null),
            serde_json::json!(true),
            serde_json::json!([]),
            serde_json::json!({}),
            serde_json::json!({
                "z": [1, -2, 3.5, 1e300, -0.0, 0.1, u64::MAX, i64::MIN, 2.5e-8],
                "a\"b\n": {"\u{1}key": "v\u{7f}\u{1f}\"\\", "e": [], "o": {}},
                "m": [{"x": null, "y": false}, [[], [true]], "s\u{e9}\u{1F600}"],
                "": ""
            }),
        ];
        for v in &values {
            let mut o = JsonText::with_capacity(0);
            o.value(v);
            assert_eq!(o.into_string(), serde_json::to_string(v).unwrap(), "{v}");
            let mut o = JsonText::with_capacity(0);
            o.object(|o| {
                o.s("a", Some("1")).val("b", Some(v)).s("c", Some("2"));
            });
            let whole = serde_json::json!({"a": "1", "b": v, "c": "2"});
            assert_eq!(o.into_string(), serde_json::to_string(&whole).unwrap());
        }
    }
}
