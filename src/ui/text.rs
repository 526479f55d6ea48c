//! Pure text helpers for the renderer: display widths, wrapping, fitting `name=value` pairs, and
//! ellipsizing labels. No IO.
//!
//! Widths are measured per *cell cluster*: a base character with the zero-width characters that
//! follow it (combining marks, variation selectors), joined through ZWJ, with emoji modifiers and
//! regional-indicator pairs. A cluster is never split. This mirrors how ratatui places graphemes
//! into cells (it sums `unicode-width` over graphemes, and drops graphemes containing control
//! characters), which is what layout has to agree with.
//!
//! Only [`ellipsize`] may cut text, and it is for labels (agent names, ids). Values (amounts,
//! accounts) go through [`wrap`] or [`fit_pairs`], which never cut.

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::domain::sanitize::{self, Segment};

const ZWJ: char = '\u{200d}';

fn is_regional_indicator(c: char) -> bool {
    ('\u{1f1e6}'..='\u{1f1ff}').contains(&c)
}

fn is_emoji_modifier(c: char) -> bool {
    ('\u{1f3fb}'..='\u{1f3ff}').contains(&c)
}

/// Splits `s` into cell clusters (see the module docs). `\n` is always a cluster of its own.
pub fn clusters(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev: Option<char> = None;
    let mut regional = 0usize;
    for (i, c) in s.char_indices() {
        if let Some(p) = prev {
            let joins = c != '\n'
                && p != '\n'
                && (c.width() == Some(0)
                    || p == ZWJ
                    || is_emoji_modifier(c)
                    || (is_regional_indicator(c) && regional == 1));
            if !joins {
                out.push(&s[start..i]);
                start = i;
                regional = 0;
            }
        }
        if is_regional_indicator(c) {
            regional += 1;
        }
        prev = Some(c);
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// The width of one cluster; a cluster containing a control character counts 0 (ratatui drops
/// it; sanitised text has none).
fn cluster_width(cluster: &str) -> usize {
    if cluster.chars().any(char::is_control) {
        0
    } else {
        UnicodeWidthStr::width(cluster)
    }
}

/// Display width in terminal columns of one line of (sanitised) text, wide characters counting
/// 2. Meant for single lines: a `\n` counts 0.
pub fn display_width(s: &str) -> usize {
    if s.is_ascii() {
        return s.bytes().filter(|b| !b.is_ascii_control()).count();
    }
    clusters(s).into_iter().map(cluster_width).sum()
}

/// One unit for the wrapper: a cluster with its width and whether it belongs to a marker.
#[derive(Debug, Clone, Copy)]
struct Atom<'a> {
    text: &'a str,
    width: usize,
    marker: bool,
}

impl Atom<'_> {
    fn is_space(&self) -> bool {
        self.text == " "
    }
}

/// Greedy word wrap of one paragraph (no `\n`) of atoms into lines of at most `width` columns.
/// Breaks at spaces (dropping the spaces at the break), hard-breaks words longer than a line,
/// never splits an atom. A single atom wider than `width` (a wide character when `width` is 1)
/// gets a line of its own.
fn wrap_paragraph<'a>(atoms: &[Atom<'a>], width: usize) -> Vec<Vec<Atom<'a>>> {
    let mut lines: Vec<Vec<Atom<'a>>> = Vec::new();
    let mut cur: Vec<Atom<'a>> = Vec::new();
    let mut cur_w = 0usize;
    let mut first_line = true;
    let mut i = 0;
    while i < atoms.len() {
        // A run of spaces, then a word.
        let sp_start = i;
        while i < atoms.len() && atoms[i].is_space() {
            i += 1;
        }
        let spaces = &atoms[sp_start..i];
        let word_start = i;
        while i < atoms.len() && !atoms[i].is_space() {
            i += 1;
        }
        let word = &atoms[word_start..i];
        if word.is_empty() {
            break; // trailing spaces are dropped
        }
        let word_w: usize = word.iter().map(|a| a.width).sum();
        // Leading spaces are kept only as the indentation of a paragraph's first line.
        let sp: &[Atom<'a>] = if cur.is_empty() && !first_line {
            &[]
        } else {
            spaces
        };
        let sp_w = sp.len();
        if cur_w + sp_w + word_w <= width {
            cur.extend_from_slice(sp);
            cur.extend_from_slice(word);
            cur_w += sp_w + word_w;
            continue;
        }
        if !cur.is_empty() {
            lines.push(std::mem::take(&mut cur));
            cur_w = 0;
            first_line = false;
        }
        if word_w <= width {
            cur.extend_from_slice(word);
            cur_w = word_w;
            continue;
        }
        for atom in word {
            if cur_w + atom.width > width && !cur.is_empty() {
                lines.push(std::mem::take(&mut cur));
                cur_w = 0;
                first_line = false;
            }
            cur.push(*atom);
            cur_w += atom.width;
        }
    }
    lines.push(cur);
    lines
}

fn atoms_of<'a>(s: &'a str, marker: bool, out: &mut Vec<Atom<'a>>) {
    // `s` has no `\n` here.
    out.extend(clusters(s).into_iter().map(|c| Atom {
        text: c,
        width: cluster_width(c),
        marker,
    }));
}

/// Wraps already-sanitised text to `width` columns (0 is treated as 1). `\n` starts a new line
/// and empty lines are kept; lines break at spaces when possible and long words are broken
/// between clusters. Every non-space character is preserved, in order; only spaces at a break
/// (and trailing spaces) are dropped. No line is wider than `width`, except a line holding a
/// single cluster that is wider on its own.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    let mut atoms = Vec::new();
    for para in text.split('\n') {
        atoms.clear();
        atoms_of(para, false, &mut atoms);
        out.extend(
            wrap_paragraph(&atoms, width)
                .into_iter()
                .map(|l| l.iter().map(|a| a.text).collect::<String>()),
        );
    }
    out
}

/// As [`wrap`], for the output of [`sanitize::segments`]: each line keeps which parts are
/// markers, so the renderer can style them. Concatenating a line's segments gives the
/// corresponding line of `wrap` on the concatenated text.
pub fn wrap_segments(segments: &[Segment], width: usize) -> Vec<Vec<Segment>> {
    let width = width.max(1);
    // Split into paragraphs at `\n` (which only occur in text segments).
    let mut paragraphs: Vec<Vec<Atom<'_>>> = vec![Vec::new()];
    for seg in segments {
        let marker = seg.is_marker();
        let mut parts = seg.as_str().split('\n');
        if let Some(first) = parts.next() {
            if let Some(p) = paragraphs.last_mut() {
                atoms_of(first, marker, p);
            }
        }
        for part in parts {
            let mut p = Vec::new();
            atoms_of(part, marker, &mut p);
            paragraphs.push(p);
        }
    }
    let mut out = Vec::new();
    for para in &paragraphs {
        for line in wrap_paragraph(para, width) {
            let mut segs: Vec<Segment> = Vec::new();
            for atom in line {
                match (segs.last_mut(), atom.marker) {
                    (Some(Segment::Marker(s)), true) | (Some(Segment::Text(s)), false) => {
                        s.push_str(atom.text);
                    }
                    (_, true) => segs.push(Segment::Marker(atom.text.to_owned())),
                    (_, false) => segs.push(Segment::Text(atom.text.to_owned())),
                }
            }
            out.push(segs);
        }
    }
    out
}

/// Renders `name=value` pairs, separated by two spaces, into at most `width` columns without
/// ever cutting a name or a value. Whole pairs are included in order while they fit, followed
/// by ` +N more` (room for it is reserved) when `N` pairs are left out. When not even the first
/// pair fits, the result is `N params` (or `+N`, `…`, or nothing, whichever fits first).
/// Names and values are sanitised with [`sanitize::line`] before measuring. Returns the text and
/// how many pairs are hidden.
pub fn fit_pairs(pairs: &[(String, String)], width: usize) -> (String, usize) {
    let n = pairs.len();
    if n == 0 {
        return (String::new(), 0);
    }
    let rendered: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", sanitize::line(k), sanitize::line(v)))
        .collect();
    // prefix[k]: width of the first k pairs joined by two spaces.
    let mut prefix = vec![0usize; n + 1];
    for (k, r) in rendered.iter().enumerate() {
        prefix[k + 1] = prefix[k] + display_width(r) + if k == 0 { 0 } else { 2 };
    }
    if prefix[n] <= width {
        return (rendered.join("  "), 0);
    }
    for k in (1..n).rev() {
        let suffix = format!(" +{} more", n - k);
        if prefix[k] + suffix.len() <= width {
            return (format!("{}{suffix}", rendered[..k].join("  ")), n - k);
        }
    }
    let noun = if n == 1 { "param" } else { "params" };
    let fallback = [format!("{n} {noun}"), format!("+{n}"), "…".to_owned()]
        .into_iter()
        .find(|f| display_width(f) <= width)
        .unwrap_or_default();
    (fallback, n)
}

/// For LABELS ONLY (agent names, ids), where cutting is acceptable: sanitises with
/// [`sanitize::line`], then, if wider than `width`, cuts between clusters and ends with `…` so
/// the result is at most `width` columns. Never use it for values a reviewer decides on.
pub fn ellipsize(s: &str, width: usize) -> String {
    let s = sanitize::line(s);
    if display_width(&s) <= width {
        return s.into_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in clusters(&s) {
        let cw = cluster_width(c);
        if w + cw > width - 1 {
            break;
        }
        out.push_str(c);
        w += cw;
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// xorshift64*: deterministic, no crates.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const PIECES: &[&str] = &[
        "a",
        "b",
        "xyz",
        "transfer",
        "5000",
        "prod-7",
        " ",
        " ",
        " ",
        "  ",
        "\n",
        "\n\n",
        "中",
        "文字",
        "😀",
        "👨\u{200d}👩\u{200d}👧",
        "❤\u{fe0f}",
        "e\u{301}",
        "🇬🇧",
        "👍🏽",
        "⟨U+202E⟩",
        "␛[2J",
        "لا",
        "각",
        "1\u{fe0f}\u{20e3}",
        "supercalifragilistic",
        "é",
        "\u{3000}",
        "\u{a0}",
    ];

    fn random_text(rng: &mut Rng) -> String {
        let len = rng.below(40);
        (0..len).map(|_| PIECES[rng.below(PIECES.len())]).collect()
    }

    fn non_space(s: &str) -> String {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }

    #[test]
    fn wrap_invariants_hold_for_generated_text() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let text = random_text(&mut rng);
            let width = rng.below(25);
            let lines = wrap(&text, width);
            let joined: String = lines.concat();
            assert_eq!(non_space(&joined), non_space(&text), "{text:?} @ {width}");
            assert!(lines.len() > text.matches('\n').count());
            for l in &lines {
                assert!(!l.contains('\n'));
                let w = display_width(l);
                let single = clusters(l).len() == 1;
                assert!(
                    w <= width.max(1) || single,
                    "{l:?} ({w}) > {width} in {text:?}"
                );
                assert!(!l.ends_with(' '), "{l:?}");
            }
            // Each paragraph wraps independently.
            let per_para: Vec<String> = text.split('\n').flat_map(|p| wrap(p, width)).collect();
            assert_eq!(per_para, lines);
            // The segment-aware wrapper agrees.
            let segs = vec![Segment::Text(text.clone())];
            let seg_lines: Vec<String> = wrap_segments(&segs, width)
                .iter()
                .map(|l| l.iter().map(Segment::as_str).collect())
                .collect();
            assert_eq!(seg_lines, lines);
        }
    }

    #[test]
    fn wrap_basics() {
        assert_eq!(wrap("", 10), vec![""]);
        assert_eq!(wrap("a\n\nb", 10), vec!["a", "", "b"]);
        assert_eq!(wrap("hello world", 5), vec!["hello", "world"]);
        assert_eq!(wrap("hello world", 11), vec!["hello world"]);
        assert_eq!(wrap("  indented text", 11), vec!["  indented", "text"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("ab abcdefgh", 4), vec!["ab", "abcd", "efgh"]);
        assert_eq!(wrap("abc", 0), vec!["a", "b", "c"]);
        // A wide character never straddles the edge.
        assert_eq!(wrap("abcd中ef", 5), vec!["abcd", "中ef"]);
        assert_eq!(wrap("中", 1), vec!["中"]);
        // Emoji sequences stay whole.
        assert_eq!(
            wrap("👨\u{200d}👩\u{200d}👧👨\u{200d}👩\u{200d}👧", 2),
            vec!["👨\u{200d}👩\u{200d}👧", "👨\u{200d}👩\u{200d}👧"]
        );
    }

    #[test]
    fn wrap_segments_keeps_markers() {
        let segs = sanitize::segments("pay \u{202e}0001 now", false);
        let lines = wrap_segments(&segs, 8);
        assert_eq!(
            lines,
            vec![
                vec![Segment::Text("pay".into())],
                vec![Segment::Marker("⟨U+202E⟩".into()),],
                vec![Segment::Text("0001 now".into())],
            ]
        );
    }

    #[test]
    fn widths() {
        assert_eq!(display_width("abc"), 3);
        assert_eq!(display_width("中文"), 4);
        assert_eq!(display_width("❤\u{fe0f}"), 2);
        assert_eq!(display_width("👨\u{200d}👩\u{200d}👧"), 2);
        assert_eq!(display_width("e\u{301}"), 1);
        assert_eq!(display_width("⟨U+202E⟩"), 8);
        assert_eq!(display_width("🇬🇧🇫🇷"), 4);
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn fit_pairs_never_cuts() {
        let p = pairs(&[("amount", "5000"), ("account", "prod-7"), ("memo", "rent")]);
        assert_eq!(
            fit_pairs(&p, 100),
            ("amount=5000  account=prod-7  memo=rent".into(), 0)
        );
        assert_eq!(
            fit_pairs(&p, 38),
            ("amount=5000  account=prod-7  memo=rent".into(), 0)
        );
        // 37 columns: memo does not fit; "amount=5000  account=prod-7 +1 more" is 35.
        assert_eq!(
            fit_pairs(&p, 37),
            ("amount=5000  account=prod-7 +1 more".into(), 1)
        );
        assert_eq!(fit_pairs(&p, 34), ("amount=5000 +2 more".into(), 2));
        assert_eq!(fit_pairs(&p, 18), ("3 params".into(), 3));
        assert_eq!(fit_pairs(&p, 3), ("+3".into(), 3));
        assert_eq!(fit_pairs(&p, 1), ("…".into(), 3));
        assert_eq!(fit_pairs(&p, 0), (String::new(), 3));
        assert_eq!(fit_pairs(&[], 10), (String::new(), 0));
        assert_eq!(fit_pairs(&p[..1], 7), ("1 param".into(), 1));
        assert_eq!(fit_pairs(&p[..1], 5), ("+1".into(), 1));
    }

    #[test]
    fn fit_pairs_sanitises_and_measures_wide() {
        let p = pairs(&[("to", "acct\u{202e}7"), ("note", "中文")]);
        let (s, hidden) = fit_pairs(&p, 100);
        assert_eq!(s, "to=acct⟨U+202E⟩7  note=中文");
        assert_eq!(hidden, 0);
        assert_eq!(display_width(&s), 27);
        let (s, hidden) = fit_pairs(&p, 26);
        assert_eq!((s.as_str(), hidden), ("to=acct⟨U+202E⟩7 +1 more", 1));
    }

    #[test]
    fn fit_pairs_properties() {
        let mut rng = Rng(42);
        for _ in 0..2000 {
            let n = rng.below(6);
            let p: Vec<(String, String)> = (0..n)
                .map(|_| (random_text(&mut rng), random_text(&mut rng)))
                .collect();
            let width = rng.below(60);
            let (s, hidden) = fit_pairs(&p, width);
            assert!(display_width(&s) <= width, "{s:?} > {width}");
            assert!(hidden <= n);
            // Every shown pair is whole: the output starts with the first n - hidden pairs.
            if hidden < n {
                let shown: Vec<String> = p[..n - hidden]
                    .iter()
                    .map(|(k, v)| format!("{}={}", sanitize::line(k), sanitize::line(v)))
                    .collect();
                assert!(s.starts_with(&shown.join("  ")));
            }
        }
    }

    #[test]
    fn ellipsize_labels() {
        assert_eq!(ellipsize("agent-alpha", 20), "agent-alpha");
        assert_eq!(ellipsize("agent-alpha", 6), "agent…");
        assert_eq!(ellipsize("中文字", 4), "中…");
        assert_eq!(ellipsize("中文字", 3), "中…");
        assert_eq!(ellipsize("abc", 0), "");
        assert_eq!(ellipsize("a\x1bb", 10), "a␛b");
        let mut rng = Rng(7);
        for _ in 0..2000 {
            let s = random_text(&mut rng);
            let w = rng.below(20);
            assert!(display_width(&ellipsize(&s, w)) <= w);
        }
    }
}
