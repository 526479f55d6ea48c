//! Neutralises untrusted text (anything an agent, a model or a user wrote) before it reaches a
//! terminal cell.
//!
//! Nothing is ever silently deleted: every character that could move the cursor, talk to the
//! terminal, reorder the line, hide itself or pile up vertically is replaced by a *visible*
//! stand-in, so a reviewer sees that something was there and, as far as possible, what it was.
//!
//! | input                                            | shown as                              |
//! |--------------------------------------------------|---------------------------------------|
//! | C0 control `U+0000`–`U+001F`, DEL                | its Control Picture: `␀` … `␟`, `␡`  |
//! | TAB                                              | `␉` (see below)                       |
//! | `\n`                                             | kept by [`block`], `␊` in [`line`]    |
//! | `\r\n`                                           | `\n` in [`block`], `␍␊` in [`line`]   |
//! | lone `\r`                                        | `␍`                                   |
//! | escape sequence (`ESC [ 2 J`, `ESC ] 0;t BEL`…)  | `␛[2J`, `␛]0;t␇`: ESC pictured, rest literal |
//! | C1 control `U+0080`–`U+009F` (8-bit CSI, OSC…)   | [`code_point_marker`]: `⟨U+009B⟩`     |
//! | bidi controls, zero-width and invisible chars    | `⟨U+202E⟩`, `⟨U+200B⟩`, …             |
//! | run of tag characters `U+E0020`–`U+E007E`        | `⟨tags:decoded ascii⟩`                |
//! | more than [`MAX_COMBINING`] combining marks      | the first few kept, then `⟨+N marks⟩` |
//!
//! Decisions:
//! - **TAB becomes `␉`, not spaces.** Expanding a tab depends on the column it starts in, which
//!   changes with wrapping, table cells and scrolling; `␉` is always exactly one column wide, so
//!   layout stays predictable, and it tells the reviewer a tab was there (a tab can be used to
//!   push text out of a fixed-width cell).
//! - **Escape sequences keep their body literally.** Only the introducer (ESC or an 8-bit C1
//!   introducer) is replaced; the rest (`[2J`, `]52;c;…`) is shown so the reviewer sees what was
//!   attempted. The result never contains ESC, BEL or any C1 code point.
//! - **Variation selectors** are legitimate in emoji (`❤️` is `U+2764 U+FE0F`), and they are also a
//!   known smuggling channel (bytes hidden as runs of selectors after an emoji). Exactly one
//!   `U+FE0E`/`U+FE0F` is kept right after an emoji-capable character (or in a keycap such as
//!   `1️⃣`); every other variation selector (`U+FE00`–`U+FE0D`, `U+E0100`–`U+E01EF`, repeats,
//!   ones after plain letters) is shown as a marker.
//! - **ZWJ** (`U+200D`) is kept only between two emoji (`👨‍👩‍👧`); anywhere else (e.g. inside an
//!   account number) it is a marker. Indic and Persian text that uses ZWJ/ZWNJ will show markers:
//!   safety over prettiness for an approval console.
//! - **Tag characters** are shown decoded (`⟨tags:ignore previous⟩`), because they are the
//!   invisible "ASCII smuggling" channel used for prompt injection. The only tag sequences kept
//!   are the three RGI subdivision flags (England, Scotland, Wales).
//! - Private-use, unassigned and noncharacter code points are left alone: they are visible (as
//!   tofu) and cannot control the terminal.
//!
//! Markers are ordinary text. To let the renderer style them with an "untrusted" role,
//! [`segments`] returns the same output split into [`Segment::Text`] and [`Segment::Marker`];
//! [`line`] and [`block`] are exactly the concatenation of those segments. A literal `⟨U+202E⟩`
//! typed by an attacker comes back as `Text`, so styling (not the marker shape) is what a reviewer
//! can trust.

use std::borrow::Cow;

use unicode_width::UnicodeWidthChar;

/// Opens a marker: `⟨` (U+27E8, one column wide).
pub const MARKER_OPEN: char = '\u{27e8}';
/// Closes a marker: `⟩` (U+27E9, one column wide).
pub const MARKER_CLOSE: char = '\u{27e9}';
/// How many consecutive combining marks are kept on one base character; more than this are
/// collapsed into a `⟨+N marks⟩` marker (Zalgo text).
pub const MAX_COMBINING: usize = 4;

/// One piece of sanitised text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Untrusted text that needed no change.
    Text(String),
    /// A visible stand-in for something neutralised (control picture, escape sequence with its
    /// ESC pictured, `⟨U+XXXX⟩`, `⟨tags:…⟩`, `⟨+N marks⟩`).
    Marker(String),
}

impl Segment {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Text(s) | Self::Marker(s) => s,
        }
    }

    pub fn is_marker(&self) -> bool {
        matches!(self, Self::Marker(_))
    }
}

/// For one-line contexts: every control character, line break included, made visible.
pub fn line(s: &str) -> Cow<'_, str> {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Cow::Borrowed(s);
    }
    join(s, &scan(s, false))
}

/// For multi-line contexts: as [`line`], but `\n` (and `\r\n`, normalised to `\n`) is kept as a
/// line break.
pub fn block(s: &str) -> Cow<'_, str> {
    if s.bytes().all(|b| b == b'\n' || (0x20..0x7f).contains(&b)) {
        return Cow::Borrowed(s);
    }
    join(s, &scan(s, true))
}

/// The sanitised text split into untouched text and markers, so a renderer can style markers.
/// Concatenating the segments gives exactly [`line`] (`multiline == false`) or [`block`]
/// (`multiline == true`). Adjacent segments of the same kind are merged; empty input gives no
/// segments.
pub fn segments(s: &str, multiline: bool) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for piece in scan(s, multiline) {
        match (piece, out.last_mut()) {
            (Piece::Keep(t), Some(Segment::Text(last))) => last.push_str(t),
            (Piece::Keep(t), _) => out.push(Segment::Text(t.to_owned())),
            (Piece::Marker(m), Some(Segment::Marker(last))) => last.push_str(&m),
            (Piece::Marker(m), _) => out.push(Segment::Marker(m)),
        }
    }
    out
}

/// True when the text needs no neutralising at all in a multi-line context (`\n` is fine, a
/// `\r` is not): [`block`] would return it borrowed and unchanged.
pub fn is_clean(s: &str) -> bool {
    matches!(block(s), Cow::Borrowed(_))
}

/// The marker for one neutralised code point: `⟨U+202E⟩` (at least four upper-case hex digits).
pub fn code_point_marker(c: char) -> String {
    format!("{MARKER_OPEN}U+{:04X}{MARKER_CLOSE}", u32::from(c))
}

/// The Unicode Control Picture for a C0 control or DEL (`ESC` → `␛`, `DEL` → `␡`).
pub fn control_picture(c: char) -> Option<char> {
    match u32::from(c) {
        n @ 0x00..=0x1f => char::from_u32(0x2400 + n),
        0x7f => Some('\u{2421}'),
        _ => None,
    }
}

/// Words that mix Latin letters with letters of a look-alike script (Cyrillic, Greek, Armenian,
/// Cherokee), e.g. `prоd-7` with a Cyrillic `о`: homoglyph spoofing. A word is a run of letters,
/// digits, `-_.@/:` and zero-width characters (so a hidden ZWSP does not split it); leading and
/// trailing punctuation is trimmed. Words are returned sanitised with [`line`], in order, without
/// duplicates.
pub fn mixed_script_words(s: &str) -> Vec<String> {
    let is_word_char = |c: char| {
        c.is_alphanumeric()
            || matches!(c, '-' | '_' | '.' | '@' | '/' | ':')
            || (!c.is_control() && c.width() == Some(0))
    };
    let mut found: Vec<String> = Vec::new();
    for word in s.split(|c: char| !is_word_char(c)) {
        let word = word.trim_matches(|c: char| matches!(c, '-' | '_' | '.' | '@' | '/' | ':'));
        let mut latin = false;
        let mut lookalike = None;
        let mut mixed_lookalikes = false;
        for c in word.chars().filter(|c| c.is_alphabetic()) {
            match script_of(c) {
                Some(Script::Latin) => latin = true,
                Some(other) => match lookalike {
                    None => lookalike = Some(other),
                    Some(prev) if prev != other => mixed_lookalikes = true,
                    Some(_) => {}
                },
                None => {}
            }
        }
        if (latin && lookalike.is_some()) || mixed_lookalikes {
            let shown = line(word).into_owned();
            if !found.contains(&shown) {
                found.push(shown);
            }
        }
    }
    found
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Latin,
    Cyrillic,
    Greek,
    Armenian,
    Cherokee,
}

fn script_of(c: char) -> Option<Script> {
    let n = u32::from(c);
    Some(match n {
        0x41..=0x5a
        | 0x61..=0x7a
        | 0xc0..=0x24f
        | 0x250..=0x2af
        | 0x1d00..=0x1d7f
        | 0x1e00..=0x1eff
        | 0x2c60..=0x2c7f
        | 0xa720..=0xa7ff
        | 0xab30..=0xab6f
        | 0xff21..=0xff3a
        | 0xff41..=0xff5a => Script::Latin,
        0x400..=0x52f | 0x1c80..=0x1c8f | 0x2de0..=0x2dff | 0xa640..=0xa69f => Script::Cyrillic,
        0x370..=0x3ff | 0x1f00..=0x1fff => Script::Greek,
        0x531..=0x58f | 0xfb13..=0xfb17 => Script::Armenian,
        0x13a0..=0x13ff | 0xab70..=0xabbf => Script::Cherokee,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// The scanner

/// Output of the scanner: runs of the input kept as they are, and markers.
#[derive(Debug)]
enum Piece<'a> {
    Keep(&'a str),
    Marker(String),
}

fn join<'a>(s: &'a str, pieces: &[Piece<'a>]) -> Cow<'a, str> {
    match pieces {
        [] => Cow::Borrowed(s),
        [Piece::Keep(t)] if t.len() == s.len() => Cow::Borrowed(s),
        _ => {
            let mut out = String::with_capacity(s.len() + 16);
            for p in pieces {
                match p {
                    Piece::Keep(t) => out.push_str(t),
                    Piece::Marker(m) => out.push_str(m),
                }
            }
            Cow::Owned(out)
        }
    }
}

const ESC: char = '\u{1b}';
const BEL: char = '\u{7}';
const ZWJ: char = '\u{200d}';
const KEYCAP: char = '\u{20e3}';
const BLACK_FLAG: char = '\u{1f3f4}';
const CANCEL_TAG: char = '\u{e007f}';

/// The RGI subdivision flags: black flag, the tag letters below, cancel tag.
const SUBDIVISION_FLAGS: [&str; 3] = ["gbeng", "gbsct", "gbwls"];

struct Scanner<'a> {
    s: &'a str,
    pieces: Vec<Piece<'a>>,
    /// Start of the current run of kept input.
    keep_from: usize,
}

impl Scanner<'_> {
    fn flush(&mut self, upto: usize) {
        if upto > self.keep_from {
            self.pieces.push(Piece::Keep(&self.s[self.keep_from..upto]));
        }
    }

    /// Replaces `s[at..resume]` with `marker`.
    fn replace(&mut self, at: usize, resume: usize, marker: String) {
        self.flush(at);
        match self.pieces.last_mut() {
            Some(Piece::Marker(last)) => last.push_str(&marker),
            _ => self.pieces.push(Piece::Marker(marker)),
        }
        self.keep_from = resume;
    }

    /// Drops `s[at..resume]` from the output (only used for the `\r` of `\r\n` in a block).
    fn skip(&mut self, at: usize, resume: usize) {
        self.flush(at);
        self.keep_from = resume;
    }
}

fn char_at(s: &str, i: usize) -> Option<char> {
    s.get(i..).and_then(|t| t.chars().next())
}

fn scan(s: &str, multiline: bool) -> Vec<Piece<'_>> {
    let mut sc = Scanner {
        s,
        pieces: Vec::new(),
        keep_from: 0,
    };
    let mut i = 0;
    // Previous input character was kept and can carry an emoji VS or ZWJ after it.
    let mut emoji_ctx = false;
    // Consecutive combining marks kept on the current base.
    let mut combining = 0usize;
    let mut prev: Option<char> = None;

    while let Some(c) = char_at(s, i) {
        let len = c.len_utf8();
        let next = char_at(s, i + len);
        let mut next_emoji_ctx = false;
        let mut is_combining = false;
        let mut resume = i + len;

        match c {
            '\n' if multiline => {}
            '\r' if multiline && next == Some('\n') => sc.skip(i, i + 1),
            ESC | '\u{90}' | '\u{98}' | '\u{9b}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => {
                resume = escape_end(s, i);
                sc.replace(i, resume, render_verbatim(&s[i..resume]));
            }
            _ if control_picture(c).is_some() || is_c1(c) => {
                sc.replace(i, resume, render_verbatim(&s[i..resume]));
            }
            BLACK_FLAG => {
                if let Some(end) = subdivision_flag_end(s, i + len) {
                    resume = end;
                }
                next_emoji_ctx = true;
            }
            '\u{e0020}'..='\u{e007e}' => {
                let mut text = String::new();
                let mut j = i;
                while let Some(t @ '\u{e0020}'..='\u{e007e}') = char_at(s, j) {
                    text.push(char::from_u32(u32::from(t) - 0xe0000).unwrap_or('?'));
                    j += t.len_utf8();
                }
                resume = j;
                sc.replace(i, resume, format!("{MARKER_OPEN}tags:{text}{MARKER_CLOSE}"));
            }
            ZWJ if emoji_ctx && next.is_some_and(is_pictographic) => {}
            '\u{fe0e}' | '\u{fe0f}'
                if (emoji_ctx && prev.is_some_and(is_pictographic))
                    || (prev.is_some_and(|p| matches!(p, '#' | '*' | '0'..='9'))
                        && next == Some(KEYCAP)) =>
            {
                next_emoji_ctx = true;
            }
            _ if is_bidi(c) || is_invisible(c) || is_variation_selector(c) || c == ZWJ => {
                sc.replace(i, resume, code_point_marker(c));
            }
            _ if c.width() == Some(0) => {
                is_combining = true;
                if combining >= MAX_COMBINING {
                    let mut n = 0usize;
                    let mut j = i;
                    while let Some(m) = char_at(s, j).filter(|&m| is_plain_combining(m)) {
                        n += 1;
                        j += m.len_utf8();
                    }
                    resume = j;
                    sc.replace(i, resume, format!("{MARKER_OPEN}+{n} marks{MARKER_CLOSE}"));
                }
            }
            _ => next_emoji_ctx = is_pictographic(c),
        }

        combining = if is_combining { combining + 1 } else { 0 };
        emoji_ctx = next_emoji_ctx;
        prev = s[..resume].chars().next_back();
        i = resume;
    }
    sc.flush(s.len());
    sc.pieces
}

/// A zero-width character the scanner keeps as a combining mark (not a control, not one of the
/// invisible characters that get markers of their own).
fn is_plain_combining(c: char) -> bool {
    c.width() == Some(0)
        && !c.is_control()
        && !is_c1(c)
        && !is_bidi(c)
        && !is_invisible(c)
        && !is_variation_selector(c)
        && c != ZWJ
        && !('\u{e0000}'..='\u{e007f}').contains(&c)
}

fn is_c1(c: char) -> bool {
    ('\u{80}'..='\u{9f}').contains(&c)
}

/// Bidirectional formatting characters: embeddings, overrides, isolates and marks.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{61c}')
}

fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{fe00}'..='\u{fe0f}' | '\u{e0100}'..='\u{e01ef}')
}

/// Invisible or default-ignorable characters (other than ZWJ, variation selectors and bidi
/// controls, which are handled with context) that always get a marker.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'                      // soft hyphen
        | '\u{34f}'                   // combining grapheme joiner
        | '\u{115f}' | '\u{1160}'     // Hangul choseong/jungseong fillers
        | '\u{17b4}' | '\u{17b5}'     // Khmer inherent vowels
        | '\u{180b}'..='\u{180f}'     // Mongolian free variation selectors, vowel separator
        | '\u{200b}' | '\u{200c}'     // zero width space, non-joiner
        | '\u{2028}' | '\u{2029}'     // line / paragraph separator
        | '\u{2060}'..='\u{2065}'     // word joiner, invisible operators
        | '\u{206a}'..='\u{206f}'     // deprecated format characters
        | '\u{3164}'                  // Hangul filler
        | '\u{feff}'                  // BOM / zero width no-break space
        | '\u{ffa0}'                  // halfwidth Hangul filler
        | '\u{fff0}'..='\u{fffb}'     // unassigned specials, interlinear annotation
        | '\u{13430}'..='\u{1343f}'   // Egyptian hieroglyph format controls
        | '\u{1bca0}'..='\u{1bca3}'   // shorthand format controls
        | '\u{1d173}'..='\u{1d17a}'   // musical symbol format controls
        | '\u{e0000}'..='\u{e001f}'   // tags outside the printable-ASCII mirror
        | '\u{e007f}'                 // cancel tag (outside a kept flag)
        | '\u{e0080}'..='\u{e00ff}'
        | '\u{e01f0}'..='\u{e0fff}'   // unassigned default-ignorable
    )
}

/// Approximates Extended_Pictographic: characters that can carry an emoji variation selector and
/// be joined by ZWJ.
fn is_pictographic(c: char) -> bool {
    matches!(
        c,
        '\u{a9}'
            | '\u{ae}'
            | '\u{203c}'
            | '\u{2049}'
            | '\u{2122}'
            | '\u{2139}'
            | '\u{2194}'..='\u{2199}'
            | '\u{21a9}'..='\u{21aa}'
            | '\u{231a}'..='\u{231b}'
            | '\u{2328}'
            | '\u{2388}'
            | '\u{23cf}'
            | '\u{23e9}'..='\u{23f3}'
            | '\u{23f8}'..='\u{23fa}'
            | '\u{24c2}'
            | '\u{25aa}'..='\u{25ab}'
            | '\u{25b6}'
            | '\u{25c0}'
            | '\u{25fb}'..='\u{25fe}'
            | '\u{2600}'..='\u{27bf}'
            | '\u{2934}'..='\u{2935}'
            | '\u{2b05}'..='\u{2b07}'
            | '\u{2b1b}'..='\u{2b1c}'
            | '\u{2b50}'
            | '\u{2b55}'
            | '\u{3030}'
            | '\u{303d}'
            | '\u{3297}'
            | '\u{3299}'
            | '\u{1f000}'..='\u{1faff}'
            | '\u{1fc00}'..='\u{1fffd}'
    )
}

/// If `s[from..]` starts with the tag letters and cancel tag of an RGI subdivision flag, the
/// byte offset just after the cancel tag.
fn subdivision_flag_end(s: &str, from: usize) -> Option<usize> {
    let rest = s.get(from..)?;
    SUBDIVISION_FLAGS.iter().find_map(|code| {
        let mut chars = rest.char_indices();
        for letter in code.chars() {
            let (_, t) = chars.next()?;
            if u32::from(t) != 0xe0000 + u32::from(letter) {
                return None;
            }
        }
        match chars.next()? {
            (at, CANCEL_TAG) => Some(from + at + CANCEL_TAG.len_utf8()),
            _ => None,
        }
    })
}

/// Renders neutralised input: C0/DEL as Control Pictures, C1 as `⟨U+XXXX⟩`, anything else as is
/// (callers only pass characters that are otherwise plain).
fn render_verbatim(seq: &str) -> String {
    let mut out = String::with_capacity(seq.len() + 8);
    for c in seq.chars() {
        if let Some(p) = control_picture(c) {
            out.push(p);
        } else if is_c1(c) {
            out.push_str(&code_point_marker(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// A character that may appear inside the body of an escape string (OSC, DCS, …) and stay in
/// the same marker: printable and needing no marker of its own.
fn is_plain(c: char) -> bool {
    !c.is_control()
        && !is_bidi(c)
        && !is_invisible(c)
        && !is_variation_selector(c)
        && c != ZWJ
        && !('\u{e0000}'..='\u{e007f}').contains(&c)
        && c.width() != Some(0)
}

/// The end (byte offset) of the escape sequence whose introducer (ESC or an 8-bit C1
/// introducer) is at `start`. The sequence is only used to decide how much of the input becomes
/// one marker; its body is made of characters that are shown literally.
fn escape_end(s: &str, start: usize) -> usize {
    let Some(intro) = char_at(s, start) else {
        return start;
    };
    let mut i = start + intro.len_utf8();
    let kind = if intro == ESC {
        match char_at(s, i) {
            Some('[') => {
                i += 1;
                '['
            }
            Some(k @ (']' | 'P' | 'X' | '^' | '_')) => {
                i += 1;
                k
            }
            Some('\u{20}'..='\u{2f}') => {
                // nF: intermediates, then one final byte.
                while let Some('\u{20}'..='\u{2f}') = char_at(s, i) {
                    i += 1;
                }
                if let Some('\u{30}'..='\u{7e}') = char_at(s, i) {
                    i += 1;
                }
                return i;
            }
            Some('\u{30}'..='\u{7e}') => return i + 1,
            _ => return i,
        }
    } else {
        match intro {
            '\u{9b}' => '[',
            '\u{9d}' => ']',
            _ => 'P',
        }
    };

    if kind == '[' {
        // CSI: parameter bytes, intermediate bytes, one final byte.
        while let Some('\u{30}'..='\u{3f}') = char_at(s, i) {
            i += 1;
        }
        while let Some('\u{20}'..='\u{2f}') = char_at(s, i) {
            i += 1;
        }
        if let Some('\u{40}'..='\u{7e}') = char_at(s, i) {
            i += 1;
        }
        return i;
    }

    // Control strings: OSC (ends with BEL or ST), DCS/SOS/PM/APC (end with ST).
    while let Some(c) = char_at(s, i) {
        match c {
            BEL if kind == ']' => return i + 1,
            '\u{9c}' => return i + c.len_utf8(),
            ESC if char_at(s, i + 1) == Some('\\') => return i + 2,
            _ if is_plain(c) => i += c.len_utf8(),
            _ => return i,
        }
    }
    i
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn ascii_is_borrowed() {
        assert!(matches!(line("transfer 5000 to prod-7"), Cow::Borrowed(_)));
        assert!(matches!(block("a\nb"), Cow::Borrowed(_)));
        assert!(matches!(line(""), Cow::Borrowed("")));
    }

    #[test]
    fn clean_unicode_is_borrowed() {
        for s in [
            "日本語のテキスト",
            "café ☕",
            "👨‍👩‍👧 family",
            "❤️",
            "1️⃣",
            "Ελληνικά",
            "e\u{301}",
        ] {
            assert!(matches!(line(s), Cow::Borrowed(_)), "{s:?}");
            assert!(is_clean(s), "{s:?}");
        }
    }

    #[test]
    fn controls_become_pictures() {
        assert_eq!(line("a\x00b\x07c\x7f"), "a␀b␇c␡");
        assert_eq!(line("a\tb"), "a␉b");
        assert_eq!(line("a\nb"), "a␊b");
        assert_eq!(line("a\r\nb"), "a␍␊b");
        assert_eq!(block("a\r\nb\rc\n"), "a\nb␍c\n");
    }

    #[test]
    fn c1_and_escapes() {
        assert_eq!(line("\u{9b}31mred"), "⟨U+009B⟩31mred");
        assert_eq!(line("\x1b[31mred\x1b[0m"), "␛[31mred␛[0m");
        assert_eq!(line("\x1b]0;pwned\x07after"), "␛]0;pwned␇after");
        assert_eq!(line("\x1bP1$r\x1b\\x"), "␛P1$r␛\\x");
        assert_eq!(line("\x1b"), "␛");
        assert_eq!(line("\x1bc"), "␛c");
        assert_eq!(line("\u{85}"), "⟨U+0085⟩");
    }

    #[test]
    fn escape_sequences_are_one_marker() {
        assert_eq!(
            segments("\x1b[31mred\x1b]0;t\x07", false),
            vec![
                Segment::Marker("␛[31m".into()),
                Segment::Text("red".into()),
                Segment::Marker("␛]0;t␇".into()),
            ]
        );
        // An unterminated OSC stops at the next non-plain character.
        assert_eq!(
            segments("\x1b]8;;http://x\nnext", true),
            vec![
                Segment::Marker("␛]8;;http://x".into()),
                Segment::Text("\nnext".into()),
            ]
        );
    }

    #[test]
    fn invisible_and_bidi_get_markers() {
        assert_eq!(line("a\u{202e}b"), "a⟨U+202E⟩b");
        assert_eq!(
            line("1\u{200b}2\u{200d}3\u{feff}"),
            "1⟨U+200B⟩2⟨U+200D⟩3⟨U+FEFF⟩"
        );
        assert_eq!(line("x\u{e01ef}"), "x⟨U+E01EF⟩");
        assert_eq!(line("a\u{fe0f}"), "a⟨U+FE0F⟩");
        assert_eq!(line("❤\u{fe0f}\u{fe0f}"), "❤\u{fe0f}⟨U+FE0F⟩");
        assert_eq!(line("\u{2028}"), "⟨U+2028⟩");
        assert_eq!(block("\u{2029}"), "⟨U+2029⟩");
    }

    #[test]
    fn tags_are_decoded() {
        let smuggled: String = "hi there"
            .chars()
            .map(|c| char::from_u32(0xe0000 + u32::from(c)).unwrap())
            .collect();
        assert_eq!(line(&format!("ok{smuggled}")), "ok⟨tags:hi there⟩");
        assert_eq!(line("\u{e0001}"), "⟨U+E0001⟩");
        let england = "🏴\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}";
        assert!(matches!(line(england), Cow::Borrowed(_)));
        let fake = "🏴\u{e0067}\u{e0062}\u{e0078}\u{e007f}";
        assert_eq!(line(fake), "🏴⟨tags:gbx⟩⟨U+E007F⟩");
    }

    #[test]
    fn zalgo_is_collapsed() {
        let z = format!("a{}b", "\u{301}".repeat(20));
        assert_eq!(line(&z), format!("a{}⟨+16 marks⟩b", "\u{301}".repeat(4)));
        let ok = "e\u{301}\u{302}\u{303}\u{304}";
        assert!(matches!(line(ok), Cow::Borrowed(_)));
    }

    #[test]
    fn idempotent() {
        for s in [
            "\x1b[2J\x1b[Hx",
            "a\u{202e}b\tc\r\nd",
            "\u{9d}52;c;QUJD\u{9c}",
            "z\u{301}\u{301}\u{301}\u{301}\u{301}\u{301}",
        ] {
            for multiline in [false, true] {
                let once = if multiline { block(s) } else { line(s) }.into_owned();
                let twice = if multiline { block(&once) } else { line(&once) };
                assert!(matches!(twice, Cow::Borrowed(_)), "{s:?} -> {once:?}");
            }
        }
    }

    #[test]
    fn mixed_scripts() {
        assert_eq!(
            mixed_script_words("send to pr\u{43e}d-7 now, not prod-8."),
            vec!["pr\u{43e}d-7"]
        );
        assert!(mixed_script_words("Привет мир, hello world, λόγος").is_empty());
        assert_eq!(
            mixed_script_words("p\u{200b}r\u{43e}d"),
            vec!["p⟨U+200B⟩r\u{43e}d"]
        );
    }

    #[test]
    fn markers_are_one_column_per_char() {
        assert_eq!(MARKER_OPEN.width(), Some(1));
        assert_eq!(MARKER_CLOSE.width(), Some(1));
        for c in (0u32..0x20).chain([0x7f]) {
            let p = control_picture(char::from_u32(c).unwrap()).unwrap();
            assert_eq!(p.width(), Some(1), "{p}");
        }
    }
}
