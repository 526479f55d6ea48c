//! Turns crossterm events into `Msg`s: the only place that knows crossterm's key types.

use chrono::Utc;
use crossterm::event::{Event, KeyCode as CtKey, KeyEvent, KeyEventKind, KeyModifiers};

use crate::app::keymap::{Key, KeyCode};
use crate::app::{Edit, KeyInput, Msg};

/// Maps one terminal event; None for events the console ignores (key releases, mouse, focus).
pub fn to_msg(event: Event) -> Option<Msg> {
    match event {
        Event::Key(k) if k.kind != KeyEventKind::Release => key_input(k).map(Msg::Key),
        Event::Resize(width, height) => Some(Msg::Resize { width, height }),
        Event::Paste(text) => Some(Msg::Paste(text)),
        _ => None,
    }
}

pub fn key_input(k: KeyEvent) -> Option<KeyInput> {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    let alt = k.modifiers.contains(KeyModifiers::ALT);
    let shift = k.modifiers.contains(KeyModifiers::SHIFT);
    let (code, edit) = match k.code {
        CtKey::Char(c) => (KeyCode::Char(c), (!ctrl && !alt).then_some(Edit::Char(c))),
        CtKey::Enter => (KeyCode::Enter, Some(Edit::Enter)),
        CtKey::Esc => (KeyCode::Esc, Some(Edit::Esc)),
        CtKey::Tab => (KeyCode::Tab, None),
        CtKey::BackTab => (KeyCode::BackTab, None),
        CtKey::Backspace => (KeyCode::Backspace, Some(Edit::Backspace)),
        CtKey::Up => (KeyCode::Up, None),
        CtKey::Down => (KeyCode::Down, None),
        CtKey::Left => (KeyCode::Left, None),
        CtKey::Right => (KeyCode::Right, None),
        CtKey::PageUp => (KeyCode::PageUp, None),
        CtKey::PageDown => (KeyCode::PageDown, None),
        CtKey::Home => (KeyCode::Home, None),
        CtKey::End => (KeyCode::End, None),
        CtKey::Delete => (KeyCode::Delete, None),
        CtKey::F(n) => (KeyCode::F(n), None),
        _ => return None,
    };
    // Ctrl-C in a prompt still quits through the keymap; it is not text.
    let shift = shift && !matches!(code, KeyCode::Char(_));
    Some(KeyInput {
        key: Key::new(code, ctrl, alt, shift),
        edit,
        at: Utc::now(),
    })
}
