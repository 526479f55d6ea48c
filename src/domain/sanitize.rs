//! Neutralises untrusted text (anything an agent, a model or a user wrote) before it reaches a
//! terminal cell.

use std::borrow::Cow;

/// For one-line contexts: every control character, line break included, made visible.
pub fn line(s: &str) -> Cow<'_, str> {
    if s.chars().all(|c| !c.is_control()) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect(),
    )
}

/// For multi-line contexts: as `line`, but `\n` is kept as a line break.
pub fn block(s: &str) -> Cow<'_, str> {
    if s.chars().all(|c| c == '\n' || !c.is_control()) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c != '\n' && c.is_control() {
                    '\u{fffd}'
                } else {
                    c
                }
            })
            .collect(),
    )
}
