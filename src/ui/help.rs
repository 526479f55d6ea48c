//! The help screen, generated from the keymap and each action's help text.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::text::{ellipsize, wrap};
use super::theme::{Role, Theme};
use crate::app::AppState;

pub fn render(frame: &mut Frame<'_>, area: Rect, state: &AppState, theme: &Theme) {
    frame.render_widget(Clear, area);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.style(Role::BorderFocused))
        .title(Span::styled(
            " Keys (remap them in [keys] of the config file) ",
            theme.style(Role::Title),
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width);
    let mut lines: Vec<Line<'static>> = Vec::new();
    if state.pane == crate::app::state::Pane::Metrics {
        lines.push(Line::styled(
            "What the metrics mean",
            theme.style(Role::Title),
        ));
        for d in super::metrics::DEFINITIONS {
            for part in wrap(d, width.saturating_sub(2)) {
                lines.push(Line::styled(format!("  {part}"), theme.style(Role::Text)));
            }
        }
        lines.push(Line::default());
    }
    for (keys, help) in state.keymap.help_lines() {
        // The help text wraps under itself, so nothing is cut.
        for (i, part) in wrap(help, width.saturating_sub(16).max(8))
            .into_iter()
            .enumerate()
        {
            let head = if i == 0 {
                ellipsize(&keys, 14)
            } else {
                String::new()
            };
            lines.push(Line::from(vec![
                Span::styled(format!("{head:>14}  "), theme.style(Role::KeyHint)),
                Span::styled(part, theme.style(Role::Text)),
            ]));
        }
    }
    let total = u16::try_from(lines.len()).unwrap_or(u16::MAX);
    let max_scroll = total.saturating_sub(inner.height);
    state.help_max_scroll.set(max_scroll);
    let scroll = state.help_scroll.min(max_scroll);
    if total > inner.height {
        let hint = format!(
            " {}{} j/k scroll ",
            if scroll > 0 { "↑" } else { "" },
            if scroll + inner.height < total {
                "↓"
            } else {
                ""
            },
        );
        let hint_width = u16::try_from(hint.chars().count()).unwrap_or(u16::MAX);
        let at = Rect {
            x: area.x + area.width.saturating_sub(hint_width + 2),
            y: area.y + area.height.saturating_sub(1),
            width: hint_width.min(area.width),
            height: 1,
        };
        frame.render_widget(
            Paragraph::new(Span::styled(hint, theme.style(Role::KeyHint))),
            at,
        );
    }
    frame.render_widget(Paragraph::new(lines).scroll((scroll, 0)), inner);
}
