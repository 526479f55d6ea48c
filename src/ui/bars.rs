//! The one-line bars: pane tabs on top; the message, prompt or filter line; the key bar, which is
//! generated from the keymap for the keys that apply right now.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::text::{display_width, ellipsize};
use super::theme::{Role, Theme};
use crate::app::AppState;
use crate::app::action::Action;
use crate::app::state::{Level, Pane, Prompt};
use crate::domain::sanitize;

pub fn tabs(frame: &mut Frame<'_>, area: Rect, state: &AppState, theme: &Theme) {
    let mut spans = vec![Span::styled(" agentdeck ", theme.style(Role::Title))];
    for pane in Pane::ALL {
        let label = match pane {
            Pane::Approvals => format!(
                " {} {} ({}) ",
                pane.index() + 1,
                pane.title(),
                state.queue.len()
            ),
            _ => format!(" {} {} ", pane.index() + 1, pane.title()),
        };
        let role = if pane == state.pane {
            Role::Selection
        } else {
            Role::Muted
        };
        spans.push(Span::styled("│".to_owned(), theme.style(Role::Border)));
        spans.push(Span::styled(label, theme.style(role)));
    }
    let [_, _, high, crit] = state.tier_counts();
    if crit + high > 0 {
        spans.push(Span::styled(
            format!(" ▲▲▲{crit} ▲▲{high} "),
            theme.style(if crit > 0 {
                Role::RiskCritical
            } else {
                Role::RiskHigh
            }),
        ));
    }
    let used: usize = spans.iter().map(|s| display_width(&s.content)).sum();
    let right = format!(
        "{} · {} ",
        sanitize::line(&state.reviewer),
        sanitize::line(&state.store_label)
    );
    let room = usize::from(area.width).saturating_sub(used + 1);
    if room > 8 {
        let right = ellipsize(&right, room);
        spans.push(Span::raw(" ".repeat(room - display_width(&right) + 1)));
        spans.push(Span::styled(right, theme.style(Role::Muted)));
    }
    frame.render_widget(
        Paragraph::new(Line::from(spans)).style(theme.style(Role::StatusBar)),
        area,
    );
}

pub fn message(frame: &mut Frame<'_>, area: Rect, state: &AppState, theme: &Theme) {
    let width = usize::from(area.width);
    let line = if let Some(prompt) = &state.prompt {
        let (label, text) = match prompt {
            Prompt::Reason { intent, text } => (
                format!(
                    "Reason to {} ({} risk): ",
                    if intent.verdict == crate::domain::decision::Verdict::Confirm {
                        "approve"
                    } else {
                        "reject"
                    },
                    intent.tier
                ),
                text,
            ),
            Prompt::Word { intent, text } => (
                format!(
                    "{} risk: type {} to approve: ",
                    intent.tier.word().to_uppercase(),
                    sanitize::line(&intent.word)
                ),
                text,
            ),
        };
        input_line(&label, text, width, theme)
    } else if state.filter_editing {
        input_line("/", &state.filter, width, theme)
    } else if let Some(m) = &state.message {
        let (sym, role) = match m.level {
            Level::Info => ("·", Role::AlertInfo),
            Level::Success => ("✓", Role::VerdictApproved),
            Level::Warn => ("!", Role::AlertWarn),
            Level::Error => ("✗", Role::AlertError),
        };
        Line::styled(
            ellipsize(&format!("{sym} {}", sanitize::line(&m.text)), width),
            theme.style(role),
        )
    } else if let Some(e) = &state.store_error {
        Line::styled(
            ellipsize(&format!("✗ store: {}", sanitize::line(e)), width),
            theme.style(Role::AlertError),
        )
    } else {
        Line::default()
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// A prompt with its text; when the text is longer than the room, the end (where the cursor is)
/// stays visible and the start is marked as scrolled off.
fn input_line(label: &str, text: &str, width: usize, theme: &Theme) -> Line<'static> {
    let shown = sanitize::line(text).into_owned();
    let room = width.saturating_sub(display_width(label) + 2);
    let mut tail: String = shown.clone();
    if display_width(&tail) > room {
        let chars: Vec<char> = shown.chars().collect();
        let mut start = 0;
        while start < chars.len()
            && display_width(&chars[start..].iter().collect::<String>()) + 1 > room
        {
            start += 1;
        }
        tail = format!("…{}", chars[start..].iter().collect::<String>());
    }
    Line::from(vec![
        Span::styled(label.to_owned(), theme.style(Role::Accent)),
        Span::styled(tail, theme.style(Role::Text)),
        Span::styled("▏".to_owned(), theme.style(Role::Accent)),
    ])
}

/// The actions that apply in the current context, in the order shown.
pub fn context_actions(state: &AppState) -> Vec<Action> {
    if state.help {
        return vec![Action::Back, Action::Quit];
    }
    match state.pane {
        Pane::Approvals if state.detail.is_some() => vec![
            Action::Approve,
            Action::Reject,
            Action::ApproveAll,
            Action::RejectAll,
            Action::MoveDown,
            Action::PageDown,
            Action::Back,
            Action::Help,
        ],
        Pane::Approvals => vec![
            Action::Open,
            Action::Approve,
            Action::Reject,
            Action::Filter,
            Action::NextPane,
            Action::Help,
            Action::Quit,
            Action::MoveDown,
            Action::MoveUp,
        ],
        Pane::Traces => vec![
            Action::Open,
            Action::Back,
            Action::MoveDown,
            Action::PageDown,
            Action::NextPane,
            Action::PaneApprovals,
            Action::Help,
            Action::Quit,
        ],
        Pane::Metrics => vec![
            Action::MetricsWindow,
            Action::MetricsAgent,
            Action::MetricsAlias,
            Action::MetricsModel,
            Action::NextPane,
            Action::PaneApprovals,
            Action::Help,
            Action::Quit,
        ],
    }
}

pub fn keys(frame: &mut Frame<'_>, area: Rect, state: &AppState, theme: &Theme) {
    let width = usize::from(area.width);
    if state.prompt.is_some() {
        if let Some(m) = state.message.as_ref().filter(|m| m.level >= Level::Warn) {
            let (sym, role) = if m.level == Level::Error {
                ("✗", Role::AlertError)
            } else {
                ("!", Role::AlertWarn)
            };
            let text = ellipsize(&format!("{sym} {}", sanitize::line(&m.text)), width);
            frame.render_widget(Paragraph::new(Line::styled(text, theme.style(role))), area);
            return;
        }
    }
    let pairs: Vec<(String, String)> = if state.prompt.is_some() {
        vec![
            ("Enter".into(), "confirm".into()),
            ("Esc".into(), "cancel".into()),
        ]
    } else if state.filter_editing {
        vec![
            ("Enter".into(), "keep filter".into()),
            ("Esc".into(), "clear".into()),
        ]
    } else {
        context_actions(state)
            .into_iter()
            .filter_map(|a| {
                state.keymap.keys_for(a).first().map(|k| {
                    let label = match (a, state.detail.is_some()) {
                        (Action::MoveDown, true) => "next input",
                        (Action::PageDown, true) => "scroll",
                        _ => a.short(),
                    };
                    (k.to_string(), label.to_owned())
                })
            })
            .collect()
    };
    let mut spans = Vec::new();
    let mut used = 0;
    for (k, label) in pairs {
        let w = display_width(&k) + display_width(&label) + 3;
        if used + w > width {
            break;
        }
        used += w;
        spans.push(Span::styled(format!(" {k}"), theme.style(Role::KeyHint)));
        spans.push(Span::styled(format!(" {label} "), theme.style(Role::Muted)));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
