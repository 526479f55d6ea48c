//! Contract tests for the shipped themes and the default keymap: every theme parses and states
//! every role, errors name the file, the role and the value, and snapshots pin the dark theme's
//! resolved styles and the help screen generated from the default keys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use agentdeck::app::action::Action;
use agentdeck::app::keymap::{Key, Keymap, KeymapError};
use agentdeck::ui::theme::{Role, Theme, ThemeError};
use ratatui::style::{Color, Modifier, Style};

const USER_FILE: &str = "/home/op/.config/agentdeck/themes/mine.toml";

fn parse_err(toml: &str) -> ThemeError {
    Theme::parse(USER_FILE, toml).unwrap_err()
}

fn shipped() -> Vec<Theme> {
    Theme::builtin_names()
        .iter()
        .map(|name| {
            let source = Theme::builtin_source(name).unwrap();
            // Parse the text directly so a broken file fails with its error, not with `None`.
            let theme = Theme::parse(&format!("themes/{name}.toml"), source).unwrap();
            assert_eq!(Theme::builtin(name).as_ref(), Some(&theme));
            assert_eq!(theme.name(), *name);
            theme
        })
        .collect()
}

#[test]
fn three_themes_ship() {
    assert_eq!(
        Theme::builtin_names(),
        &["dark", "light", "high-contrast"][..]
    );
    assert!(Theme::builtin("solarized").is_none());
}

#[test]
fn every_shipped_theme_defines_every_role_with_a_colour() {
    for theme in shipped() {
        for role in Role::ALL {
            assert!(
                theme.is_defined(role),
                "theme {} relies on the fallback for `{role}`",
                theme.name()
            );
            assert!(
                theme.style(role).fg.is_some(),
                "theme {}: `{role}` has no foreground",
                theme.name()
            );
        }
    }
}

#[test]
fn shipped_themes_keep_tiers_and_verdicts_apart() {
    let mut themes = shipped();
    themes.push(Theme::no_color());
    let tiers = [
        Role::RiskLow,
        Role::RiskMedium,
        Role::RiskHigh,
        Role::RiskCritical,
    ];
    let verdicts = [
        Role::VerdictPending,
        Role::VerdictApproved,
        Role::VerdictRejected,
        Role::VerdictExpired,
        Role::VerdictMixed,
    ];
    for theme in &themes {
        for group in [&tiers[..], &verdicts[..]] {
            for (i, a) in group.iter().enumerate() {
                for b in &group[i + 1..] {
                    assert_ne!(
                        theme.style(*a),
                        theme.style(*b),
                        "theme {}: `{a}` and `{b}` look the same",
                        theme.name()
                    );
                }
            }
        }
        assert_ne!(theme.style(Role::Selection), theme.style(Role::Text));
        assert_ne!(theme.style(Role::BorderFocused), theme.style(Role::Border));
        // Risk is visually ordered: low is quiet, high and critical are bold, and critical is
        // the loudest of all (a background of its own, or reversed).
        let bold = |r: Role| theme.style(r).add_modifier.contains(Modifier::BOLD);
        assert!(!bold(Role::RiskLow), "theme {}", theme.name());
        assert!(bold(Role::RiskHigh) && bold(Role::RiskCritical));
        let critical = theme.style(Role::RiskCritical);
        assert!(critical.bg.is_some() || critical.add_modifier.contains(Modifier::REVERSED));
    }
}

#[test]
fn fallback_chains_end_at_text_without_cycles() {
    assert_eq!(Role::Text.fallback(), None);
    for role in Role::ALL {
        let mut seen = vec![role];
        let mut at = role;
        while let Some(next) = at.fallback() {
            assert!(
                !seen.contains(&next),
                "fallback cycle: {seen:?} then {next:?}"
            );
            seen.push(next);
            at = next;
        }
        assert_eq!(at, Role::Text, "chain from `{role}` ends at `{at}`");
    }
}

#[test]
fn role_names_round_trip() {
    for role in Role::ALL {
        assert_eq!(Role::from_name(role.name()), Some(role));
    }
    assert_eq!(Role::from_name("risk-extreme"), None);
}

#[test]
fn missing_roles_follow_the_fallback_chain() {
    let theme = Theme::parse(
        USER_FILE,
        r##"
        [roles]
        text = { fg = "white" }
        accent = { fg = "#ff8800", underline = true }
        alert-error = { fg = 196 }
        "##,
    )
    .unwrap();
    assert_eq!(theme.name(), "mine");
    let accent = Style::new()
        .fg(Color::Rgb(0xff, 0x88, 0x00))
        .add_modifier(Modifier::UNDERLINED);
    assert!(!theme.is_defined(Role::BorderFocused));
    assert_eq!(theme.style(Role::BorderFocused), accent);
    assert_eq!(theme.style(Role::Muted), Style::new().fg(Color::White));
    assert_eq!(theme.style(Role::Border), Style::new().fg(Color::White));
    assert_eq!(
        theme.style(Role::RiskCritical),
        Style::new().fg(Color::Indexed(196))
    );
    // risk-high -> alert-warn (missing) -> accent
    assert_eq!(theme.style(Role::RiskHigh), accent);
}

#[test]
fn inherit_starts_from_the_parent_and_overrides_win() {
    let theme = Theme::parse(
        USER_FILE,
        r#"
        name = "custom"
        [roles]
        accent = { fg = "cyan", bold = true, italic = true }
        title = { inherit = "accent", bg = "reset", italic = false, reversed = true }
        "#,
    )
    .unwrap();
    assert_eq!(theme.name(), "custom");
    let title = theme.style(Role::Title);
    assert_eq!(title.fg, Some(Color::Cyan));
    assert_eq!(title.bg, Some(Color::Reset));
    assert_eq!(
        title.add_modifier,
        Modifier::BOLD | Modifier::REVERSED,
        "italic removed, bold inherited"
    );
    assert!(title.sub_modifier.contains(Modifier::ITALIC));
}

#[test]
fn extends_takes_the_missing_roles_from_a_builtin() {
    let dark = Theme::builtin("dark").unwrap();
    let theme = Theme::parse(
        USER_FILE,
        r##"
        extends = "dark"
        [roles]
        accent = { fg = "#ff00ff" }
        "##,
    )
    .unwrap();
    assert_eq!(
        theme.style(Role::Accent),
        Style::new().fg(Color::Rgb(255, 0, 255))
    );
    for role in Role::ALL.into_iter().filter(|r| *r != Role::Accent) {
        assert_eq!(theme.style(role), dark.style(role), "`{role}`");
        assert!(!theme.is_defined(role));
    }
    let err = parse_err(r#"extends = "solarized""#);
    assert!(matches!(err, ThemeError::UnknownBase { ref base, .. } if base == "solarized"));
    let msg = err.to_string();
    assert!(
        msg.contains(USER_FILE) && msg.contains("dark, light, high-contrast"),
        "{msg}"
    );
}

#[test]
fn an_inheritance_cycle_names_the_roles() {
    let err = parse_err(
        r#"
        [roles]
        accent = { inherit = "title" }
        title = { inherit = "key-hint" }
        key-hint = { inherit = "accent", bold = true }
        "#,
    );
    let ThemeError::InheritCycle {
        ref source_name,
        ref roles,
        ..
    } = err
    else {
        panic!("expected a cycle, got {err}");
    };
    assert_eq!(source_name, USER_FILE);
    assert_eq!(roles, &["accent", "title", "key-hint", "accent"]);
    let msg = err.to_string();
    assert!(msg.contains(USER_FILE), "{msg}");
    assert!(
        msg.contains("`accent` inherits `title`")
            && msg.contains("`title` inherits `key-hint`")
            && msg.contains("`key-hint` inherits `accent`"),
        "{msg}"
    );
}

#[test]
fn a_cycle_through_a_fallback_says_so() {
    // text inherits accent, which the file leaves out, and accent falls back to text.
    let err = parse_err(
        r#"
        [roles]
        text = { inherit = "accent" }
        "#,
    );
    let msg = err.to_string();
    assert!(
        matches!(err, ThemeError::InheritCycle { ref roles, .. } if roles == &["text", "accent", "text"])
    );
    assert!(
        msg.contains("`accent` (not in the file) falls back to `text`"),
        "{msg}"
    );
    let err = parse_err("[roles]\nmuted = { inherit = \"muted\" }");
    assert!(
        matches!(err, ThemeError::InheritCycle { ref roles, .. } if roles == &["muted", "muted"])
    );
}

#[test]
fn an_unknown_role_names_the_file_and_the_role() {
    let err = parse_err("[roles]\nrisk-extreme = { fg = \"red\" }");
    assert!(matches!(err, ThemeError::UnknownRole { ref role, .. } if role == "risk-extreme"));
    let msg = err.to_string();
    assert!(
        msg.contains(USER_FILE) && msg.contains("`risk-extreme`") && msg.contains("risk-critical"),
        "{msg}"
    );
}

#[test]
fn a_bad_colour_names_the_file_role_field_and_value() {
    for (value, shown) in [
        ("\"#12345\"", "#12345"),
        ("\"purple\"", "purple"),
        ("\"darkgray\"", "darkgray"),
        ("300", "300"),
        ("true", "true"),
    ] {
        let err = parse_err(&format!("[roles]\nrisk-high = {{ bg = {value} }}"));
        assert_eq!(
            err,
            ThemeError::BadColour {
                source_name: USER_FILE.to_owned(),
                role: "risk-high",
                field: "bg",
                value: shown.to_owned(),
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains(USER_FILE)
                && msg.contains("`risk-high`")
                && msg.contains(&format!("`{shown}`")),
            "{msg}"
        );
    }
}

#[test]
fn other_mistakes_are_named_too() {
    let err = parse_err("[roles]\ntext = { fg = \"white\", blink = true }");
    assert!(
        matches!(err, ThemeError::UnknownField { role: "text", ref field, .. } if field == "blink")
    );
    assert!(err.to_string().contains(USER_FILE));

    let err = parse_err("[roles]\ntext = { bold = \"yes\" }");
    assert!(matches!(err, ThemeError::BadValue { role: "text", ref field, .. } if field == "bold"));
    assert!(err.to_string().contains("\"yes\""), "{err}");

    let err = parse_err("[roles]\ntext = \"white\"");
    assert!(
        matches!(err, ThemeError::BadValue { role: "text", .. }),
        "{err}"
    );

    let err = parse_err("[roles]\ntitle = { inherit = \"heading\" }");
    assert!(
        matches!(err, ThemeError::UnknownInherit { role: "title", ref target, .. } if target == "heading")
    );

    let err = parse_err("colour = \"dark\"");
    assert!(matches!(err, ThemeError::UnknownKey { ref key, .. } if key == "colour"));
    assert!(err.to_string().contains(USER_FILE));

    let err = parse_err("name = 3");
    assert!(
        matches!(err, ThemeError::BadTopLevel { key: "name", .. }),
        "{err}"
    );

    let err = parse_err("[roles\ntext = {}");
    assert!(matches!(err, ThemeError::Syntax { .. }));
    assert!(err.to_string().starts_with(USER_FILE), "{err}");
}

#[test]
fn no_color_has_no_colours_but_keeps_things_apart() {
    let theme = Theme::no_color();
    for (role, style) in theme.items() {
        assert_eq!(style.fg, None, "`{role}`");
        assert_eq!(style.bg, None, "`{role}`");
    }
    assert!(
        theme
            .style(Role::Selection)
            .add_modifier
            .contains(Modifier::REVERSED)
    );
}

fn describe(style: Style) -> String {
    let colour = |c: Option<Color>| c.map_or_else(|| "-".to_owned(), |c| c.to_string());
    let mut out = format!("fg={:<8} bg={:<8}", colour(style.fg), colour(style.bg));
    if !style.add_modifier.is_empty() {
        write!(out, " +{:?}", style.add_modifier).unwrap();
    }
    if !style.sub_modifier.is_empty() {
        write!(out, " -{:?}", style.sub_modifier).unwrap();
    }
    out
}

fn theme_items(theme: &Theme) -> String {
    theme.items().fold(String::new(), |mut out, (role, style)| {
        let line = format!("{:<16} {}", role.name(), describe(style));
        writeln!(out, "{}", line.trim_end()).unwrap();
        out
    })
}

#[test]
fn dark_theme_items_snapshot() {
    insta::assert_snapshot!(
        "dark_theme_items",
        theme_items(&Theme::builtin("dark").unwrap())
    );
}

#[test]
fn no_color_theme_items_snapshot() {
    insta::assert_snapshot!("no_color_theme_items", theme_items(&Theme::no_color()));
}

#[test]
fn default_keymap_help_snapshot() {
    let lines =
        Keymap::default()
            .help_lines()
            .into_iter()
            .fold(String::new(), |mut out, (keys, help)| {
                writeln!(out, "{keys:<16} {help}").unwrap();
                out
            });
    insta::assert_snapshot!("default_keymap_help", lines);
}

#[test]
fn keymap_overrides_from_a_config_table() {
    let keys: BTreeMap<String, Vec<String>> = toml::from_str(
        r#"
        approve = ["y"]
        reject = ["n"]
        quit = ["ctrl-q", "f10"]
        "#,
    )
    .unwrap();
    let km = Keymap::with_overrides(&keys).unwrap();
    assert_eq!(
        km.resolve(&"y".parse::<Key>().unwrap()),
        Some(Action::Approve)
    );
    assert_eq!(
        km.resolve(&"n".parse::<Key>().unwrap()),
        Some(Action::Reject)
    );
    assert_eq!(
        km.resolve(&"f10".parse::<Key>().unwrap()),
        Some(Action::Quit)
    );
    assert_eq!(km.resolve(&"q".parse::<Key>().unwrap()), None);
    let help = km.help_lines();
    assert!(help.contains(&("ctrl-q, f10".to_owned(), Action::Quit.help())));

    let bad: BTreeMap<String, Vec<String>> =
        toml::from_str("approve = [\"n\"]\nreject = [\"n\"]").unwrap();
    assert_eq!(
        Keymap::with_overrides(&bad).unwrap_err(),
        KeymapError::Conflict {
            key: "n".to_owned(),
            first: "approve",
            second: "reject"
        }
    );
}

#[test]
fn keymap_and_theme_stay_pure() {
    for (path, text) in [
        ("src/app/keymap.rs", include_str!("../../src/app/keymap.rs")),
        ("src/ui/theme.rs", include_str!("../../src/ui/theme.rs")),
    ] {
        for forbidden in [
            "crossterm",
            "tokio",
            "std::fs",
            "std::io",
            "std::env",
            "std::net",
        ] {
            assert!(
                !text.contains(forbidden),
                "{path} mentions `{forbidden}`; it must stay pure"
            );
        }
    }
}
