//! The help screen, generated from the keymap and each action's help text.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::text::ellipsize;
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
            for part in super::text::wrap(d, width.saturating_sub(2)) {
                lines.push(Line::styled(format!("  {part}"), theme.style(Role::Text)));
            }
        }
        lines.push(Line::default());
    }
    lines.extend(state.keymap.help_lines().into_iter().map(|(keys, help)| {
        Line::from(vec![
            Span::styled(
                format!("{:>14}  ", ellipsize(&keys, 14)),
                theme.style(Role::KeyHint),
            ),
            Span::styled(
                ellipsize(help, width.saturating_sub(16)),
                theme.style(Role::Text),
            ),
        ])
    }));
    frame.render_widget(Paragraph::new(lines), inner);
}
