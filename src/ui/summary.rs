//! What the panes share: their frame, and the loading (or failed read) placeholder.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, Paragraph};

use super::theme::{Role, Theme};
use crate::app::AppState;
use crate::domain::sanitize;

pub(super) fn frame_block(title: &str, theme: &Theme) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(theme.style(Role::BorderFocused))
        .title(Span::styled(format!(" {title} "), theme.style(Role::Title)))
}

pub(super) fn loading(frame: &mut Frame<'_>, area: Rect, state: &AppState, theme: &Theme) {
    let text = state.store_error.as_ref().map_or_else(
        || "loading…".to_owned(),
        |e| format!("✗ {}", sanitize::line(e)),
    );
    frame.render_widget(Paragraph::new(text).style(theme.style(Role::Muted)), area);
}
