//! Themes: a style for each semantic `Role`, read from TOML (three built in, embedded with
//! `include_str!`, or a user file whose text the config layer hands over). Pure: no file IO here.
//!
//! ```toml
//! name = "dark"                  # optional; defaults to the file's stem
//! extends = "dark"               # optional; roles this file leaves out come from a built-in theme
//! [roles]
//! text = { fg = "#c9d1d9" }
//! title = { inherit = "accent", bold = true }
//! selection = { fg = "white", bg = 24, bold = true }
//! ```
//!
//! A role is `{ fg, bg, bold, italic, underline, reversed, dim, inherit }`, every field optional.
//! Colours are `"#rrggbb"`, a 256-colour index (`208`), a named colour (`"dark-gray"`,
//! `"light-red"`, …) or `"reset"`. `inherit` starts from another role's resolved style; a modifier
//! set to `false` removes it from the inherited style. A role the file leaves out takes the
//! `extends` theme's style, or else follows `Role::fallback` to a role it does define.

use std::fmt;

use ratatui::style::{Color, Modifier, Style};
use thiserror::Error;
use toml::{Table, Value};

/// What a piece of the screen means; each theme gives every role a style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Ordinary text.
    Text,
    /// Secondary text: timestamps, ids, hints.
    Muted,
    /// What the eye should find first: the active tab, a live value.
    Accent,
    /// Pane and dialog titles.
    Title,
    /// Borders of unfocused panes.
    Border,
    /// The border of the focused pane.
    BorderFocused,
    /// The selected row.
    Selection,
    /// Keys in the key bar and the help screen.
    KeyHint,
    /// The status bar at the bottom.
    StatusBar,
    RiskLow,
    RiskMedium,
    RiskHigh,
    RiskCritical,
    VerdictPending,
    VerdictApproved,
    VerdictRejected,
    VerdictExpired,
    /// A request whose inputs got different verdicts.
    VerdictMixed,
    AlertInfo,
    AlertWarn,
    AlertError,
    /// Visible markers that stand in for neutralised control characters in untrusted text.
    Untrusted,
    Chart1,
    Chart2,
    Chart3,
    Chart4,
}

const ROLE_COUNT: usize = 26;

impl Role {
    pub const ALL: [Self; ROLE_COUNT] = [
        Self::Text,
        Self::Muted,
        Self::Accent,
        Self::Title,
        Self::Border,
        Self::BorderFocused,
        Self::Selection,
        Self::KeyHint,
        Self::StatusBar,
        Self::RiskLow,
        Self::RiskMedium,
        Self::RiskHigh,
        Self::RiskCritical,
        Self::VerdictPending,
        Self::VerdictApproved,
        Self::VerdictRejected,
        Self::VerdictExpired,
        Self::VerdictMixed,
        Self::AlertInfo,
        Self::AlertWarn,
        Self::AlertError,
        Self::Untrusted,
        Self::Chart1,
        Self::Chart2,
        Self::Chart3,
        Self::Chart4,
    ];

    /// The kebab-case name used in theme files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Muted => "muted",
            Self::Accent => "accent",
            Self::Title => "title",
            Self::Border => "border",
            Self::BorderFocused => "border-focused",
            Self::Selection => "selection",
            Self::KeyHint => "key-hint",
            Self::StatusBar => "status-bar",
            Self::RiskLow => "risk-low",
            Self::RiskMedium => "risk-medium",
            Self::RiskHigh => "risk-high",
            Self::RiskCritical => "risk-critical",
            Self::VerdictPending => "verdict-pending",
            Self::VerdictApproved => "verdict-approved",
            Self::VerdictRejected => "verdict-rejected",
            Self::VerdictExpired => "verdict-expired",
            Self::VerdictMixed => "verdict-mixed",
            Self::AlertInfo => "alert-info",
            Self::AlertWarn => "alert-warn",
            Self::AlertError => "alert-error",
            Self::Untrusted => "untrusted",
            Self::Chart1 => "chart-1",
            Self::Chart2 => "chart-2",
            Self::Chart3 => "chart-3",
            Self::Chart4 => "chart-4",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The role whose style stands in when a theme leaves this one out. Every chain ends at
    /// `Text`, which has none.
    pub fn fallback(self) -> Option<Self> {
        match self {
            Self::Text => None,
            Self::Muted
            | Self::Accent
            | Self::StatusBar
            | Self::RiskMedium
            | Self::VerdictApproved => Some(Self::Text),
            Self::Border | Self::RiskLow | Self::VerdictExpired => Some(Self::Muted),
            Self::Title
            | Self::BorderFocused
            | Self::Selection
            | Self::KeyHint
            | Self::VerdictPending
            | Self::AlertInfo
            | Self::AlertWarn
            | Self::AlertError
            | Self::Chart1
            | Self::Chart2
            | Self::Chart3
            | Self::Chart4 => Some(Self::Accent),
            Self::RiskHigh | Self::VerdictMixed | Self::Untrusted => Some(Self::AlertWarn),
            Self::RiskCritical | Self::VerdictRejected => Some(Self::AlertError),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a theme could not be read. Every variant names the source (the file path, or the
/// built-in theme) and, where there is one, the role and the offending value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ThemeError {
    #[error("{source_name}: not valid TOML: {message}")]
    Syntax {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: unknown key `{key}`; expected `name`, `extends` or `[roles]`")]
    UnknownKey { source_name: String, key: String },
    #[error("{source_name}: `{key}` must be {expected}, not `{value}`")]
    BadTopLevel {
        source_name: String,
        key: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("{source_name}: `extends = \"{base}\"` names no built-in theme; built in: {valid}")]
    UnknownBase {
        source_name: String,
        base: String,
        valid: String,
    },
    #[error("{source_name}: unknown role `{role}`; valid roles are: {valid}")]
    UnknownRole {
        source_name: String,
        role: String,
        valid: String,
    },
    #[error(
        "{source_name}: role `{role}`: unknown field `{field}`; expected fg, bg, bold, italic, \
         underline, reversed, dim or inherit"
    )]
    UnknownField {
        source_name: String,
        role: &'static str,
        field: String,
    },
    #[error(
        "{source_name}: role `{role}`: `{field}` is not a colour: `{value}`; use \"#rrggbb\", \
         a 256-colour index 0-255, \"reset\" or a name ({COLOUR_NAMES_HELP})"
    )]
    BadColour {
        source_name: String,
        role: &'static str,
        field: &'static str,
        value: String,
    },
    #[error("{source_name}: role `{role}`: `{field}` must be {expected}, not `{value}`")]
    BadValue {
        source_name: String,
        role: &'static str,
        field: String,
        expected: &'static str,
        value: String,
    },
    #[error("{source_name}: role `{role}` inherits `{target}`, which is not a role")]
    UnknownInherit {
        source_name: String,
        role: &'static str,
        target: String,
    },
    #[error("{source_name}: roles inherit in a cycle: {description}")]
    InheritCycle {
        source_name: String,
        /// The roles around the cycle, the first repeated at the end.
        roles: Vec<&'static str>,
        description: String,
    },
}

const COLOUR_NAMES: &[(&str, Color)] = &[
    ("reset", Color::Reset),
    ("black", Color::Black),
    ("red", Color::Red),
    ("green", Color::Green),
    ("yellow", Color::Yellow),
    ("blue", Color::Blue),
    ("magenta", Color::Magenta),
    ("cyan", Color::Cyan),
    ("gray", Color::Gray),
    ("dark-gray", Color::DarkGray),
    ("light-red", Color::LightRed),
    ("light-green", Color::LightGreen),
    ("light-yellow", Color::LightYellow),
    ("light-blue", Color::LightBlue),
    ("light-magenta", Color::LightMagenta),
    ("light-cyan", Color::LightCyan),
    ("white", Color::White),
];

const COLOUR_NAMES_HELP: &str = "black, red, green, yellow, blue, magenta, cyan, gray, \
    dark-gray, light-red, light-green, light-yellow, light-blue, light-magenta, light-cyan, white";

const MODIFIERS: &[(&str, Modifier)] = &[
    ("bold", Modifier::BOLD),
    ("italic", Modifier::ITALIC),
    ("underline", Modifier::UNDERLINED),
    ("reversed", Modifier::REVERSED),
    ("dim", Modifier::DIM),
];

const BUILTIN: &[(&str, &str)] = &[
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

const BUILTIN_NAMES: [&str; 3] = ["dark", "light", "high-contrast"];

/// A resolved theme: one style for every role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Theme {
    name: String,
    styles: [Style; ROLE_COUNT],
    defined: [bool; ROLE_COUNT],
}

/// One role as a file states it, before inheritance is resolved.
#[derive(Debug, Clone, Copy, Default)]
struct RoleSpec {
    inherit: Option<Role>,
    own: Style,
}

impl Theme {
    /// Reads a theme. `source_name` (the file path, usually) is only used in error messages and
    /// as the theme's name when the file gives none.
    pub fn parse(source_name: &str, toml_text: &str) -> Result<Self, ThemeError> {
        let table: Table = toml::from_str(toml_text).map_err(|e| ThemeError::Syntax {
            source_name: source_name.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let mut name = None;
        let mut base = None;
        let mut specs: [Option<RoleSpec>; ROLE_COUNT] = [None; ROLE_COUNT];
        for (key, value) in &table {
            match key.as_str() {
                "name" => name = Some(top_level_string(source_name, "name", value)?),
                "extends" => {
                    let wanted = top_level_string(source_name, "extends", value)?;
                    base = Some(
                        Self::builtin(&wanted).ok_or_else(|| ThemeError::UnknownBase {
                            source_name: source_name.to_owned(),
                            base: wanted.clone(),
                            valid: BUILTIN_NAMES.join(", "),
                        })?,
                    );
                }
                "roles" => {
                    let Value::Table(roles) = value else {
                        return Err(ThemeError::BadTopLevel {
                            source_name: source_name.to_owned(),
                            key: "roles",
                            expected: "a table",
                            value: value.to_string(),
                        });
                    };
                    for (role_name, spec) in roles {
                        let role =
                            Role::from_name(role_name).ok_or_else(|| ThemeError::UnknownRole {
                                source_name: source_name.to_owned(),
                                role: role_name.clone(),
                                valid: Role::ALL.map(Role::name).join(", "),
                            })?;
                        specs[role.index()] = Some(parse_role(source_name, role, spec)?);
                    }
                }
                _ => {
                    return Err(ThemeError::UnknownKey {
                        source_name: source_name.to_owned(),
                        key: key.clone(),
                    });
                }
            }
        }
        let mut resolver = Resolver {
            source_name,
            specs: &specs,
            base: base.as_ref(),
            done: [None; ROLE_COUNT],
            stack: Vec::new(),
        };
        let mut styles = [Style::new(); ROLE_COUNT];
        for role in Role::ALL {
            styles[role.index()] = resolver.resolve(role)?;
        }
        Ok(Self {
            name: name.unwrap_or_else(|| file_stem(source_name).to_owned()),
            styles,
            defined: specs.map(|s| s.is_some()),
        })
    }

    /// A theme shipped with agentdeck, by name (see `builtin_names`).
    pub fn builtin(name: &str) -> Option<Self> {
        let (_, text) = BUILTIN.iter().find(|(n, _)| *n == name)?;
        Self::parse(&format!("themes/{name}.toml (built in)"), text).ok()
    }

    /// The names of the themes shipped with agentdeck.
    pub fn builtin_names() -> &'static [&'static str] {
        &BUILTIN_NAMES
    }

    /// The embedded TOML text of a built-in theme, for `agentdeck` to show or copy out.
    pub fn builtin_source(name: &str) -> Option<&'static str> {
        BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// A theme without a single colour, for `NO_COLOR`: modifiers only, chosen so that the
    /// selection, the focused border and the risk tiers stay apart.
    pub fn no_color() -> Self {
        let styles = Role::ALL.map(|role| {
            let m = match role {
                Role::Text
                | Role::Border
                | Role::RiskMedium
                | Role::VerdictApproved
                | Role::AlertInfo
                | Role::Chart2 => Modifier::empty(),
                Role::Muted | Role::RiskLow | Role::VerdictExpired | Role::Chart3 => Modifier::DIM,
                Role::Accent
                | Role::Title
                | Role::BorderFocused
                | Role::KeyHint
                | Role::RiskHigh
                | Role::VerdictPending
                | Role::AlertWarn
                | Role::Chart1 => Modifier::BOLD,
                Role::Selection | Role::StatusBar | Role::Untrusted => Modifier::REVERSED,
                Role::VerdictMixed | Role::Chart4 => Modifier::UNDERLINED,
                Role::VerdictRejected => Modifier::BOLD | Modifier::UNDERLINED,
                Role::RiskCritical | Role::AlertError => Modifier::BOLD | Modifier::REVERSED,
            };
            Style::new().add_modifier(m)
        });
        Self {
            name: "no-color".to_owned(),
            styles,
            defined: [true; ROLE_COUNT],
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The resolved style of a role.
    pub fn style(&self, role: Role) -> Style {
        self.styles[role.index()]
    }

    /// Whether the theme's own text gave this role (rather than `extends` or the fallback).
    pub fn is_defined(&self, role: Role) -> bool {
        self.defined[role.index()]
    }

    /// Every role with its resolved style, in `Role::ALL` order.
    pub fn items(&self) -> impl Iterator<Item = (Role, Style)> + '_ {
        Role::ALL.into_iter().map(|r| (r, self.style(r)))
    }
}

fn file_stem(source_name: &str) -> &str {
    let file = source_name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(source_name);
    file.strip_suffix(".toml").unwrap_or(file)
}

fn top_level_string(
    source_name: &str,
    key: &'static str,
    value: &Value,
) -> Result<String, ThemeError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        other => Err(ThemeError::BadTopLevel {
            source_name: source_name.to_owned(),
            key,
            expected: "a string",
            value: other.to_string(),
        }),
    }
}

fn parse_role(source_name: &str, role: Role, value: &Value) -> Result<RoleSpec, ThemeError> {
    let bad_value = |field: &str, expected: &'static str, value: &Value| ThemeError::BadValue {
        source_name: source_name.to_owned(),
        role: role.name(),
        field: field.to_owned(),
        expected,
        value: value.to_string(),
    };
    let Value::Table(fields) = value else {
        return Err(bad_value(
            "(the role itself)",
            "a table such as { fg = \"#c9d1d9\", bold = true }",
            value,
        ));
    };
    let mut spec = RoleSpec::default();
    for (field, v) in fields {
        match field.as_str() {
            "fg" | "bg" => {
                let which = if field == "fg" { "fg" } else { "bg" };
                let colour = parse_colour(v).ok_or_else(|| ThemeError::BadColour {
                    source_name: source_name.to_owned(),
                    role: role.name(),
                    field: which,
                    value: match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    },
                })?;
                if which == "fg" {
                    spec.own.fg = Some(colour);
                } else {
                    spec.own.bg = Some(colour);
                }
            }
            "inherit" => {
                let Value::String(target) = v else {
                    return Err(bad_value(field, "a role name", v));
                };
                spec.inherit =
                    Some(
                        Role::from_name(target).ok_or_else(|| ThemeError::UnknownInherit {
                            source_name: source_name.to_owned(),
                            role: role.name(),
                            target: target.clone(),
                        })?,
                    );
            }
            other => {
                let Some((_, modifier)) = MODIFIERS.iter().find(|(n, _)| *n == other) else {
                    return Err(ThemeError::UnknownField {
                        source_name: source_name.to_owned(),
                        role: role.name(),
                        field: other.to_owned(),
                    });
                };
                spec.own = match v {
                    Value::Boolean(true) => spec.own.add_modifier(*modifier),
                    Value::Boolean(false) => spec.own.remove_modifier(*modifier),
                    _ => return Err(bad_value(field, "true or false", v)),
                };
            }
        }
    }
    Ok(spec)
}

fn parse_colour(value: &Value) -> Option<Color> {
    match value {
        Value::Integer(i) => u8::try_from(*i).ok().map(Color::Indexed),
        Value::String(s) => {
            if let Some(hex) = s.strip_prefix('#') {
                if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
                return Some(Color::Rgb(channel(0)?, channel(2)?, channel(4)?));
            }
            COLOUR_NAMES.iter().find(|(n, _)| *n == s).map(|(_, c)| *c)
        }
        _ => None,
    }
}

/// Resolves `inherit` and fallbacks depth-first, remembering the path to report cycles.
struct Resolver<'a> {
    source_name: &'a str,
    specs: &'a [Option<RoleSpec>; ROLE_COUNT],
    base: Option<&'a Theme>,
    done: [Option<Style>; ROLE_COUNT],
    stack: Vec<Role>,
}

impl Resolver<'_> {
    fn resolve(&mut self, role: Role) -> Result<Style, ThemeError> {
        if let Some(style) = self.done[role.index()] {
            return Ok(style);
        }
        if let Some(start) = self.stack.iter().position(|r| *r == role) {
            return Err(self.cycle_error(start, role));
        }
        self.stack.push(role);
        let style = match self.specs[role.index()] {
            Some(spec) => {
                let from = match spec.inherit {
                    Some(parent) => self.resolve(parent)?,
                    None => Style::new(),
                };
                from.patch(spec.own)
            }
            None => match (self.base, role.fallback()) {
                (Some(base), _) => base.style(role),
                (None, Some(parent)) => self.resolve(parent)?,
                (None, None) => Style::new(),
            },
        };
        self.stack.pop();
        self.done[role.index()] = Some(style);
        Ok(style)
    }

    fn cycle_error(&self, start: usize, again: Role) -> ThemeError {
        let mut roles: Vec<Role> = self.stack[start..].to_vec();
        roles.push(again);
        let description = roles
            .windows(2)
            .map(|pair| {
                if self.specs[pair[0].index()].is_some() {
                    format!("`{}` inherits `{}`", pair[0], pair[1])
                } else {
                    format!(
                        "`{}` (not in the file) falls back to `{}`",
                        pair[0], pair[1]
                    )
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        ThemeError::InheritCycle {
            source_name: self.source_name.to_owned(),
            roles: roles.into_iter().map(Role::name).collect(),
            description,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn names_round_trip_and_indices_match_all() {
        for (i, role) in Role::ALL.into_iter().enumerate() {
            assert_eq!(Role::from_name(role.name()), Some(role));
            assert_eq!(role.index(), i);
        }
        assert_eq!(Role::from_name("Text"), None);
    }

    #[test]
    fn colours_parse() {
        let s = |x: &str| parse_colour(&Value::String(x.to_owned()));
        assert_eq!(s("#0a0B0c"), Some(Color::Rgb(10, 11, 12)));
        assert_eq!(s("dark-gray"), Some(Color::DarkGray));
        assert_eq!(s("reset"), Some(Color::Reset));
        assert_eq!(
            parse_colour(&Value::Integer(208)),
            Some(Color::Indexed(208))
        );
        assert_eq!(parse_colour(&Value::Integer(256)), None);
        assert_eq!(parse_colour(&Value::Integer(-1)), None);
        assert_eq!(s("#abc"), None);
        assert_eq!(s("#ééé"), None);
        assert_eq!(s("darkgray"), None);
        assert_eq!(parse_colour(&Value::Boolean(true)), None);
    }

    #[test]
    fn file_stem_names_the_theme() {
        assert_eq!(
            file_stem("/home/u/.config/agentdeck/themes/solar.toml"),
            "solar"
        );
        assert_eq!(file_stem("plain"), "plain");
    }
}
