//! Keys and the keymap: which key asks for which `Action`, remappable from the config file's
//! `[keys]` table. Pure: no terminal library, no IO; the runtime translates its key events into
//! `Key` values and asks `Keymap::resolve`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use super::action::Action;

/// A key without its modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyCode {
    /// A printable character; its case carries shift (`A` is shift-a).
    Char(char),
    Enter,
    Esc,
    Tab,
    /// Shift-tab.
    BackTab,
    Backspace,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
    Delete,
    /// A function key, `F(1)` to `F(24)`.
    F(u8),
}

/// The highest function key a binding may name.
pub const MAX_F_KEY: u8 = 24;

/// Named keys: the canonical name first (used for display), then accepted aliases.
const NAMED: &[(&str, KeyCode)] = &[
    ("enter", KeyCode::Enter),
    ("return", KeyCode::Enter),
    ("esc", KeyCode::Esc),
    ("escape", KeyCode::Esc),
    ("tab", KeyCode::Tab),
    ("backtab", KeyCode::BackTab),
    ("backspace", KeyCode::Backspace),
    ("space", KeyCode::Char(' ')),
    ("up", KeyCode::Up),
    ("down", KeyCode::Down),
    ("left", KeyCode::Left),
    ("right", KeyCode::Right),
    ("pgup", KeyCode::PageUp),
    ("pageup", KeyCode::PageUp),
    ("pgdown", KeyCode::PageDown),
    ("pagedown", KeyCode::PageDown),
    ("home", KeyCode::Home),
    ("end", KeyCode::End),
    ("delete", KeyCode::Delete),
    ("del", KeyCode::Delete),
];

/// A key press: a code plus ctrl, alt and (for non-character keys only) shift.
///
/// Built through `Key::new`, which normalises what terminals report differently: shift on a
/// character is folded into its case (`shift` + `a` is `A`; shift on `?` is dropped, the `?`
/// already says it), shift-tab becomes `BackTab`, and shift on `BackTab` is implied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    code: KeyCode,
    ctrl: bool,
    alt: bool,
    shift: bool,
}

impl Key {
    pub fn new(code: KeyCode, ctrl: bool, alt: bool, shift: bool) -> Self {
        let (code, shift) = match code {
            KeyCode::Char(c) if shift => (KeyCode::Char(upper(c)), false),
            KeyCode::Tab if shift => (KeyCode::BackTab, false),
            KeyCode::Char(_) | KeyCode::BackTab => (code, false),
            _ => (code, shift),
        };
        Self {
            code,
            ctrl,
            alt,
            shift,
        }
    }

    /// A key with no modifiers.
    pub fn plain(code: KeyCode) -> Self {
        Self::new(code, false, false, false)
    }

    /// A character with no modifiers.
    pub fn char(c: char) -> Self {
        Self::plain(KeyCode::Char(c))
    }

    /// Ctrl plus a character.
    pub fn ctrl(c: char) -> Self {
        Self::new(KeyCode::Char(c), true, false, false)
    }

    pub fn code(self) -> KeyCode {
        self.code
    }

    pub fn has_ctrl(self) -> bool {
        self.ctrl
    }

    pub fn has_alt(self) -> bool {
        self.alt
    }

    pub fn has_shift(self) -> bool {
        self.shift
    }
}

fn upper(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

/// Why a key string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyParseError {
    #[error("empty key string")]
    Empty,
    #[error(
        "unknown key `{0}`: use one character (`a`, `A`, `?`) or a name (enter, esc, tab, \
         backtab, backspace, space, up, down, left, right, pgup, pgdown, home, end, delete, \
         f1..f{MAX_F_KEY}), optionally after ctrl-, alt- or shift-"
    )]
    Unknown(String),
    #[error("key `{0}` repeats the modifier `{1}`")]
    RepeatedModifier(String, &'static str),
    #[error(
        "key `{0}`: shift- does not apply to characters; write the shifted character itself \
         (`A` rather than `shift-a`)"
    )]
    ShiftedChar(String),
    #[error("key `{0}`: control characters cannot be bound")]
    ControlChar(String),
    #[error("key `{0}`: function keys run from f1 to f{MAX_F_KEY}")]
    FunctionKeyRange(String),
}

impl FromStr for Key {
    type Err = KeyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(KeyParseError::Empty);
        }
        let (mut ctrl, mut alt, mut shift) = (false, false, false);
        let mut rest = s;
        while let Some((prefix, tail)) = rest.split_once('-') {
            // `-` alone and `ctrl--` name the minus key itself.
            if tail.is_empty() {
                break;
            }
            let (flag, name) = match prefix.to_ascii_lowercase().as_str() {
                "ctrl" => (&mut ctrl, "ctrl"),
                "alt" => (&mut alt, "alt"),
                "shift" => (&mut shift, "shift"),
                _ => break,
            };
            if *flag {
                return Err(KeyParseError::RepeatedModifier(s.to_owned(), name));
            }
            *flag = true;
            rest = tail;
        }
        let code = parse_code(rest).ok_or_else(|| {
            let mut chars = rest.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c.is_control() => KeyParseError::ControlChar(s.to_owned()),
                _ if is_f_key_name(rest) => KeyParseError::FunctionKeyRange(s.to_owned()),
                _ => KeyParseError::Unknown(s.to_owned()),
            }
        })?;
        if shift && matches!(code, KeyCode::Char(_)) {
            return Err(KeyParseError::ShiftedChar(s.to_owned()));
        }
        Ok(Self::new(code, ctrl, alt, shift))
    }
}

fn parse_code(s: &str) -> Option<KeyCode> {
    let mut chars = s.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return (!c.is_control() && !c.is_whitespace()).then_some(KeyCode::Char(c));
    }
    let lower = s.to_ascii_lowercase();
    if let Some((_, code)) = NAMED.iter().find(|(name, _)| *name == lower) {
        return Some(*code);
    }
    let n: u8 = lower.strip_prefix('f')?.parse().ok()?;
    (1..=MAX_F_KEY).contains(&n).then_some(KeyCode::F(n))
}

fn is_f_key_name(s: &str) -> bool {
    s.len() > 1 && s.starts_with(['f', 'F']) && s[1..].chars().all(|c| c.is_ascii_digit())
}

impl fmt::Display for Key {
    /// The canonical spelling, which `Key::from_str` reads back to the same key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("ctrl-")?;
        }
        if self.alt {
            f.write_str("alt-")?;
        }
        if self.shift {
            f.write_str("shift-")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::F(n) => write!(f, "f{n}"),
            code => {
                let name = NAMED
                    .iter()
                    .find(|(_, c)| *c == code)
                    .map_or("?", |(name, _)| *name);
                f.write_str(name)
            }
        }
    }
}

/// Why the `[keys]` table could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeymapError {
    #[error("[keys]: unknown action `{action}`; valid actions are: {valid}")]
    UnknownAction { action: String, valid: String },
    #[error("[keys]: action `{action}`: {source}")]
    BadKey {
        action: &'static str,
        #[source]
        source: KeyParseError,
    },
    #[error("[keys]: key `{key}` is bound to both `{first}` and `{second}`; rebind one of them")]
    Conflict {
        key: String,
        first: &'static str,
        second: &'static str,
    },
    #[error("[keys]: action `{action}` must keep at least one key, or there is no way out")]
    NoWayOut { action: &'static str },
}

/// Which key asks for which action. Every key resolves to at most one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keymap {
    bindings: BTreeMap<Action, Vec<Key>>,
    lookup: HashMap<Key, Action>,
}

/// Actions that must always keep a key.
const WAYS_OUT: [Action; 2] = [Action::Back, Action::Quit];

impl Default for Keymap {
    fn default() -> Self {
        let bindings: BTreeMap<Action, Vec<Key>> = Action::ALL
            .into_iter()
            .map(|a| (a, default_keys(a)))
            .collect();
        let mut lookup = HashMap::new();
        for (action, keys) in &bindings {
            for key in keys {
                lookup.insert(*key, *action);
            }
        }
        Self { bindings, lookup }
    }
}

fn default_keys(action: Action) -> Vec<Key> {
    use KeyCode as K;
    let plain = Key::plain;
    match action {
        Action::MoveUp => vec![Key::char('k'), plain(K::Up)],
        Action::MoveDown => vec![Key::char('j'), plain(K::Down)],
        Action::PageUp => vec![plain(K::PageUp), Key::ctrl('b')],
        Action::PageDown => vec![plain(K::PageDown), Key::ctrl('f')],
        Action::Top => vec![Key::char('g'), plain(K::Home)],
        Action::Bottom => vec![Key::char('G'), plain(K::End)],
        Action::NextPane => vec![plain(K::Tab)],
        Action::PrevPane => vec![plain(K::BackTab)],
        Action::PaneApprovals => vec![Key::char('1')],
        Action::PaneTraces => vec![Key::char('2')],
        Action::PaneMetrics => vec![Key::char('3')],
        Action::Open => vec![plain(K::Enter), Key::char('l')],
        Action::Back => vec![plain(K::Esc), Key::char('h')],
        Action::Approve => vec![Key::char('a')],
        Action::Reject => vec![Key::char('r')],
        Action::ApproveAll => vec![Key::char('A')],
        Action::RejectAll => vec![Key::char('R')],
        Action::Filter => vec![Key::char('/')],
        Action::Follow => vec![Key::char('f')],
        Action::Jump => vec![Key::char('J')],
        Action::Copy => vec![Key::char('c')],
        Action::Export => vec![Key::char('E')],
        Action::MarkGood => vec![Key::char('+')],
        Action::MarkBad => vec![Key::char('-')],
        Action::Help => vec![Key::char('?')],
        Action::Quit => vec![Key::char('q'), Key::ctrl('c')],
        Action::MetricsWindow => vec![Key::char('w')],
        Action::MetricsAgent => vec![Key::char('e')],
        Action::MetricsAlias => vec![Key::char('v')],
        Action::MetricsModel => vec![Key::char('m')],
    }
}

impl Keymap {
    /// The defaults with the config file's `[keys]` table applied: each named action's keys are
    /// replaced by the listed ones (an empty list unbinds the action, except `quit` and `back`).
    pub fn with_overrides(overrides: &BTreeMap<String, Vec<String>>) -> Result<Self, KeymapError> {
        let mut bindings = Self::default().bindings;
        for (name, keys) in overrides {
            let action = Action::from_name(name).ok_or_else(|| KeymapError::UnknownAction {
                action: name.clone(),
                valid: Action::ALL.map(Action::name).join(", "),
            })?;
            let mut parsed: Vec<Key> = Vec::with_capacity(keys.len());
            for key in keys {
                let key = key.parse::<Key>().map_err(|source| KeymapError::BadKey {
                    action: action.name(),
                    source,
                })?;
                if !parsed.contains(&key) {
                    parsed.push(key);
                }
            }
            bindings.insert(action, parsed);
        }
        for action in WAYS_OUT {
            if bindings.get(&action).is_none_or(Vec::is_empty) {
                return Err(KeymapError::NoWayOut {
                    action: action.name(),
                });
            }
        }
        let mut lookup: HashMap<Key, Action> = HashMap::new();
        for action in Action::ALL {
            for key in bindings.get(&action).map_or(&[][..], Vec::as_slice) {
                if let Some(first) = lookup.insert(*key, action) {
                    return Err(KeymapError::Conflict {
                        key: key.to_string(),
                        first: first.name(),
                        second: action.name(),
                    });
                }
            }
        }
        Ok(Self { bindings, lookup })
    }

    /// The action a key asks for, if any.
    pub fn resolve(&self, key: &Key) -> Option<Action> {
        self.lookup.get(key).copied()
    }

    /// The keys bound to an action, in the order they were listed (empty if unbound).
    pub fn keys_for(&self, action: Action) -> &[Key] {
        self.bindings.get(&action).map_or(&[], Vec::as_slice)
    }

    /// One line per bound action, in `Action::ALL` order: its keys joined (`"k, up"`) and its
    /// help text. Unbound actions are left out, since no key reaches them.
    pub fn help_lines(&self) -> Vec<(String, &'static str)> {
        Action::ALL
            .into_iter()
            .filter_map(|action| {
                let keys = self.keys_for(action);
                (!keys.is_empty()).then(|| {
                    let joined = keys
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ");
                    (joined, action.help())
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn key(s: &str) -> Key {
        s.parse().unwrap()
    }

    fn overrides(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(a, ks)| {
                (
                    (*a).to_owned(),
                    ks.iter().map(|k| (*k).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn defaults_resolve_vim_and_arrows() {
        let km = Keymap::default();
        let cases = [
            ("k", Action::MoveUp),
            ("up", Action::MoveUp),
            ("j", Action::MoveDown),
            ("down", Action::MoveDown),
            ("pgup", Action::PageUp),
            ("ctrl-b", Action::PageUp),
            ("pgdown", Action::PageDown),
            ("ctrl-f", Action::PageDown),
            ("g", Action::Top),
            ("home", Action::Top),
            ("G", Action::Bottom),
            ("end", Action::Bottom),
            ("tab", Action::NextPane),
            ("backtab", Action::PrevPane),
            ("1", Action::PaneApprovals),
            ("2", Action::PaneTraces),
            ("3", Action::PaneMetrics),
            ("enter", Action::Open),
            ("l", Action::Open),
            ("esc", Action::Back),
            ("h", Action::Back),
            ("a", Action::Approve),
            ("r", Action::Reject),
            ("A", Action::ApproveAll),
            ("R", Action::RejectAll),
            ("/", Action::Filter),
            ("?", Action::Help),
            ("q", Action::Quit),
            ("ctrl-c", Action::Quit),
            ("w", Action::MetricsWindow),
            ("e", Action::MetricsAgent),
            ("v", Action::MetricsAlias),
            ("m", Action::MetricsModel),
        ];
        for (k, action) in cases {
            assert_eq!(km.resolve(&key(k)), Some(action), "key {k}");
        }
        assert_eq!(km.resolve(&key("x")), None);
        assert_eq!(km.resolve(&key("ctrl-a")), None);
        assert_eq!(km.resolve(&key("alt-q")), None);
    }

    #[test]
    fn every_action_has_a_default_key_and_defaults_do_not_clash() {
        let km = Keymap::with_overrides(&BTreeMap::new()).unwrap();
        assert_eq!(km, Keymap::default());
        for action in Action::ALL {
            assert!(!km.keys_for(action).is_empty(), "{}", action.name());
            for k in km.keys_for(action) {
                assert_eq!(km.resolve(k), Some(action));
            }
        }
    }

    #[test]
    fn terminal_reports_normalise() {
        assert_eq!(
            Key::new(KeyCode::Char('a'), false, false, true),
            Key::char('A')
        );
        assert_eq!(
            Key::new(KeyCode::Char('?'), false, false, true),
            Key::char('?')
        );
        assert_eq!(
            Key::new(KeyCode::Tab, false, false, true),
            Key::plain(KeyCode::BackTab)
        );
        assert_eq!(
            Key::new(KeyCode::BackTab, false, false, true),
            Key::plain(KeyCode::BackTab)
        );
        assert!(Key::new(KeyCode::Up, false, false, true).has_shift());
        let km = Keymap::default();
        assert_eq!(
            km.resolve(&Key::new(KeyCode::Char('a'), false, false, true)),
            Some(Action::ApproveAll)
        );
    }

    #[test]
    fn parse_accepts_aliases_and_case_insensitive_names() {
        assert_eq!(key("Enter"), key("return"));
        assert_eq!(key("ESCAPE"), key("esc"));
        assert_eq!(key("PageDown"), key("pgdown"));
        assert_eq!(key("del"), key("delete"));
        assert_eq!(key("Ctrl-x"), Key::ctrl('x'));
        assert_eq!(key("alt-ctrl-x"), key("ctrl-alt-x"));
        assert_eq!(key("shift-tab"), key("backtab"));
        assert_eq!(key("-"), Key::char('-'));
        assert_eq!(key("ctrl--"), Key::ctrl('-'));
        assert_eq!(key("space"), Key::char(' '));
        assert_eq!(key("F5"), Key::plain(KeyCode::F(5)));
        assert_eq!(key("shift-up").to_string(), "shift-up");
        assert_ne!(key("a"), key("A"));
    }

    #[test]
    fn display_parse_round_trips() {
        let km = Keymap::default();
        for action in Action::ALL {
            for k in km.keys_for(action) {
                let shown = k.to_string();
                assert_eq!(key(&shown), *k, "{shown}");
            }
        }
        for s in [
            "a",
            "A",
            "?",
            "/",
            "-",
            "enter",
            "esc",
            "tab",
            "backtab",
            "backspace",
            "space",
            "up",
            "down",
            "left",
            "right",
            "pgup",
            "pgdown",
            "home",
            "end",
            "delete",
            "f1",
            "f24",
            "ctrl-c",
            "alt-x",
            "ctrl-alt-delete",
            "shift-up",
            "ctrl--",
            "ctrl-space",
            "é",
        ] {
            assert_eq!(key(s).to_string(), s);
        }
    }

    #[test]
    fn parse_errors_name_the_string() {
        let err = |s: &str| s.parse::<Key>().unwrap_err();
        assert_eq!(err(""), KeyParseError::Empty);
        assert_eq!(err("enterr"), KeyParseError::Unknown("enterr".into()));
        assert!(err("enterr").to_string().contains("`enterr`"));
        assert_eq!(err("meta-x"), KeyParseError::Unknown("meta-x".into()));
        assert_eq!(
            err("ctrl-ctrl-c"),
            KeyParseError::RepeatedModifier("ctrl-ctrl-c".into(), "ctrl")
        );
        assert_eq!(err("shift-a"), KeyParseError::ShiftedChar("shift-a".into()));
        assert_eq!(err("f0"), KeyParseError::FunctionKeyRange("f0".into()));
        assert_eq!(err("f25"), KeyParseError::FunctionKeyRange("f25".into()));
        assert_eq!(err("\t"), KeyParseError::ControlChar("\t".into()));
        assert_eq!(err(" "), KeyParseError::Unknown(" ".into()));
        assert_eq!(err("ctrl-"), KeyParseError::Unknown("ctrl-".into()));
    }

    #[test]
    fn overrides_replace_the_defaults_of_that_action_only() {
        let km = Keymap::with_overrides(&overrides(&[
            ("approve", &["y", "ctrl-y"]),
            ("quit", &["ctrl-q"]),
        ]))
        .unwrap();
        assert_eq!(km.resolve(&key("y")), Some(Action::Approve));
        assert_eq!(km.resolve(&key("ctrl-y")), Some(Action::Approve));
        assert_eq!(km.resolve(&key("a")), None, "the default is replaced");
        assert_eq!(km.resolve(&key("q")), None);
        assert_eq!(km.resolve(&key("ctrl-c")), None);
        assert_eq!(km.resolve(&key("ctrl-q")), Some(Action::Quit));
        assert_eq!(
            km.resolve(&key("r")),
            Some(Action::Reject),
            "others untouched"
        );
        assert_eq!(km.keys_for(Action::Approve), &[key("y"), key("ctrl-y")]);
    }

    #[test]
    fn a_freed_key_can_move_to_another_action() {
        let km =
            Keymap::with_overrides(&overrides(&[("approve", &["r"]), ("reject", &["x", "x"])]))
                .unwrap();
        assert_eq!(km.resolve(&key("r")), Some(Action::Approve));
        assert_eq!(
            km.keys_for(Action::Reject),
            &[key("x")],
            "duplicates collapse"
        );
    }

    #[test]
    fn an_empty_list_unbinds_and_leaves_the_help() {
        let km = Keymap::with_overrides(&overrides(&[("approve-all", &[])])).unwrap();
        assert_eq!(km.resolve(&key("A")), None);
        assert!(km.keys_for(Action::ApproveAll).is_empty());
        assert!(
            km.help_lines()
                .iter()
                .all(|(_, h)| *h != Action::ApproveAll.help())
        );
    }

    #[test]
    fn unknown_action_is_named_with_the_valid_ones() {
        let e = Keymap::with_overrides(&overrides(&[("aprove", &["y"])])).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, KeymapError::UnknownAction { ref action, .. } if action == "aprove"));
        assert!(msg.contains("`aprove`"), "{msg}");
        assert!(msg.contains("approve, reject"), "{msg}");
    }

    #[test]
    fn unparsable_key_names_the_key_and_the_action() {
        let e = Keymap::with_overrides(&overrides(&[("open", &["enter", "entr"])])).unwrap_err();
        assert_eq!(
            e,
            KeymapError::BadKey {
                action: "open",
                source: KeyParseError::Unknown("entr".into()),
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("`open`") && msg.contains("`entr`"), "{msg}");
    }

    #[test]
    fn a_key_bound_twice_names_both_actions() {
        let e = Keymap::with_overrides(&overrides(&[("approve", &["r"])])).unwrap_err();
        assert_eq!(
            e,
            KeymapError::Conflict {
                key: "r".into(),
                first: "approve",
                second: "reject",
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("`r`") && msg.contains("`approve`") && msg.contains("`reject`"));
        let e = Keymap::with_overrides(&overrides(&[("filter", &["ctrl-c"])])).unwrap_err();
        assert!(matches!(e, KeymapError::Conflict { ref key, .. } if key == "ctrl-c"));
    }

    #[test]
    fn quit_and_back_must_keep_a_key() {
        for action in ["quit", "back"] {
            let e = Keymap::with_overrides(&overrides(&[(action, &[])])).unwrap_err();
            assert_eq!(
                e,
                KeymapError::NoWayOut {
                    action: Action::from_name(action).unwrap().name()
                }
            );
            assert!(e.to_string().contains(&format!("`{action}`")));
        }
    }

    #[test]
    fn help_lines_follow_action_order() {
        let lines = Keymap::default().help_lines();
        assert_eq!(lines.len(), Action::ALL.len());
        assert_eq!(lines[0], ("k, up".to_owned(), Action::MoveUp.help()));
        let quit = Action::ALL.iter().position(|a| *a == Action::Quit).unwrap();
        assert_eq!(lines[quit], ("q, ctrl-c".to_owned(), Action::Quit.help()));
    }
}
