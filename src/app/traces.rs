//! The traces pane's part of `update`: the index kept current page by page, the drill-down
//! (sessions → invocations → steps → a step's events), follow mode, and the filter line with
//! its full-text search. Pure: reads leave as effects.

use super::action::Action;
use super::msg::{Edit, Effect};
use super::state::Pane;
use super::state::{AppState, Level, SessionView, StepView, TurnView};
use super::trace_index::{NONE, StepFilter};
use super::update::{moved, open_request, push_limited, say, short_id};
use crate::domain::approval::ApprovalId;
use crate::domain::step_kind::StepKinds;
use crate::domain::trace::{InvocationDetail, ObservationDetail, StepEvent, TraceKind};
use crate::store::run::IndexPage;

/// Trace events read per index page: the first load of a large store arrives in pages, and the
/// screen stays live between them.
pub const INDEX_PAGE_EVENTS: usize = 20_000;

/// Asks for what changed since the index's cursor; one read at a time.
pub fn load_index(state: &mut AppState) -> Vec<Effect> {
    let t = &mut state.traces;
    if t.index_loading {
        t.index_again = true;
        return Vec::new();
    }
    t.index_loading = true;
    let tag = state.next_tag;
    state.next_tag += 1;
    let t = &mut state.traces;
    t.index_tag = tag;
    vec![Effect::LoadTraceIndex {
        tag,
        since: t.index.cursor,
        refresh: t.index.running(),
    }]
}

pub fn index_loaded(
    state: &mut AppState,
    tag: u64,
    result: Result<Box<IndexPage>, String>,
) -> Vec<Effect> {
    if tag != state.traces.index_tag {
        return Vec::new();
    }
    state.traces.index_loading = false;
    let mut fx = Vec::new();
    match result {
        Ok(page) => {
            state.traces.index_error = None;
            let more = page.more;
            let changed = state.traces.index.apply(&page);
            if changed && state.traces.pending_jump.is_some() {
                fx.extend(open_pending(state));
            }
            if changed {
                refilter(state);
                if state.traces.follow {
                    follow_latest(state);
                }
                // The open turn may have grown: read its rows near the selection again.
                fx.extend(load_rows(state, true));
            }
            if more || std::mem::take(&mut state.traces.index_again) {
                fx.extend(load_index(state));
            }
        }
        Err(e) => {
            state.traces.index_error = Some(e);
            if std::mem::take(&mut state.traces.index_again) {
                fx.extend(load_index(state));
            }
        }
    }
    fx
}

pub fn search_done(
    state: &mut AppState,
    tag: u64,
    result: Result<Vec<(String, u64)>, String>,
) -> Vec<Effect> {
    let t = &mut state.traces;
    if tag != t.search_tag {
        return Vec::new();
    }
    t.searching = false;
    match result {
        Ok(found) => {
            let hits: Vec<u32> = found
                .iter()
                .filter_map(|(request, step)| {
                    let inv = t.index.invocation_by_request(request)?;
                    t.index.step_pos(inv, *step)
                })
                .filter_map(|p| u32::try_from(p).ok())
                .collect();
            let n = hits.len();
            t.hits = Some(hits);
            refilter(state);
            let shown = state.traces.results.as_ref().map_or(0, Vec::len);
            say(
                state,
                Level::Info,
                format!("search found {n} steps; {shown} pass the filters"),
            );
        }
        Err(e) => say(state, Level::Error, format!("search failed: {e}")),
    }
    Vec::new()
}

/// Recomputes the steps the filter passes (after the index grew or the filter changed).
fn refilter(state: &mut AppState) {
    let t = &mut state.traces;
    if t.filter.is_empty() {
        t.results = None;
        return;
    }
    if !t.filter.text.is_empty() && t.hits.is_none() {
        return;
    }
    let results = t.filter.apply(&t.index, t.hits.as_deref());
    t.selected = t.selected.min(results.len().saturating_sub(1));
    t.results = Some(results);
}

/// Follow mode: stays on the followed invocation while it runs, with its newest step selected;
/// once it has ended, moves to a newer invocation of the same session (a resume), else to the
/// newest invocation still running, else the newest started. Picks the newest when nothing is
/// followed yet.
fn follow_target(state: &AppState) -> Option<u32> {
    let ix = &state.traces.index;
    let latest = ix.latest_invocation()?;
    let Some(current) = state.traces.turn.as_ref().map(|t| t.invocation) else {
        return Some(latest);
    };
    let inv = ix.invocations.get(current as usize)?;
    if inv.outcome == crate::store::run::Outcome::Running {
        return Some(current);
    }
    let newest_in_session = ix.sessions[inv.session as usize]
        .invocations
        .iter()
        .copied()
        .max_by_key(|i| (ix.invocations[*i as usize].started_ms, *i));
    if let Some(n) = newest_in_session.filter(|n| *n != current) {
        return Some(n);
    }
    let running = ix
        .invocations
        .iter()
        .enumerate()
        .filter(|(_, i)| i.outcome == crate::store::run::Outcome::Running)
        .max_by_key(|(n, i)| (i.started_ms, *n))
        .and_then(|(n, _)| u32::try_from(n).ok());
    Some(running.unwrap_or(latest))
}

/// Opens (or stays on) the followed invocation with its newest step selected.
fn follow_latest(state: &mut AppState) {
    let Some(latest) = follow_target(state) else {
        return;
    };
    let t = &mut state.traces;
    let last = t.index.invocations[latest as usize]
        .steps
        .len()
        .saturating_sub(1);
    match t.turn.as_mut() {
        Some(turn) if turn.invocation == latest => {
            if turn.step.is_none() {
                turn.selected = last;
            }
        }
        Some(turn) if turn.step.is_some() => {}
        _ => {
            let inv = &t.index.invocations[latest as usize];
            let session = inv.session;
            let request_id = t.index.names.name(inv.request).to_owned();
            let selected_inv = t.index.sessions[session as usize]
                .invocations
                .iter()
                .position(|i| *i == latest)
                .unwrap_or(0);
            t.session = Some(SessionView {
                session,
                selected: selected_inv,
            });
            t.turn = Some(TurnView {
                request_id,
                invocation: latest,
                tag: 0,
                steps: None,
                rows_from: 0,
                selected: last,
                step: None,
            });
        }
    }
}

/// Reads the step rows (rationale text) around the selection of the open turn when the loaded
/// ones do not cover the screen, or always with `force`.
fn load_rows(state: &mut AppState, force: bool) -> Vec<Effect> {
    let page = state.list_height();
    let tag = state.next_tag;
    let Some(turn) = state.traces.turn.as_mut().filter(|t| t.step.is_none()) else {
        return Vec::new();
    };
    let start = turn.selected.saturating_sub(page);
    let end = turn.selected + page;
    let covered = match &turn.steps {
        Some(Ok(rows)) => {
            let from = usize::try_from(turn.rows_from).unwrap_or(usize::MAX);
            from <= start && end <= from + rows.len().max(page * 3)
        }
        _ => false,
    };
    if covered && !force {
        return Vec::new();
    }
    state.next_tag += 1;
    turn.tag = tag;
    turn.rows_from = start as u64;
    vec![Effect::LoadSteps {
        tag,
        request_id: turn.request_id.clone(),
        after: start as u64,
        limit: page * 3,
    }]
}

fn open_turn(state: &mut AppState, inv: u32, selected: usize) -> Vec<Effect> {
    let t = &mut state.traces;
    let Some(entry) = t.index.invocations.get(inv as usize) else {
        return Vec::new();
    };
    t.turn = Some(TurnView {
        request_id: t.index.names.name(entry.request).to_owned(),
        invocation: inv,
        tag: 0,
        steps: None,
        rows_from: 0,
        selected,
        step: None,
    });
    load_rows(state, true)
}

/// The sessions list's rows: sessions, or the filter's steps.
fn top_len(state: &AppState) -> usize {
    let t = &state.traces;
    t.results
        .as_ref()
        .map_or(t.index.recent.len(), std::vec::Vec::len)
}

/// Asks which invocation and step raised a request.
pub fn find_raising(state: &mut AppState, id: ApprovalId) -> Vec<Effect> {
    let tag = state.tag();
    state.traces.jump_tag = tag;
    vec![Effect::FindRaisingStep { tag, id }]
}

pub fn raising_found(
    state: &mut AppState,
    tag: u64,
    id: ApprovalId,
    result: Result<Option<(String, Option<u64>)>, String>,
) -> Vec<Effect> {
    if tag != state.traces.jump_tag {
        return Vec::new();
    }
    match result {
        Err(e) => {
            say(state, Level::Error, format!("cannot find the step: {e}"));
            Vec::new()
        }
        Ok(None) => {
            let short = short_id(&id);
            say(
                state,
                Level::Warn,
                format!("request {short} was not raised by the agentdeck runner: it has no trace"),
            );
            Vec::new()
        }
        Ok(Some((request_id, step))) => {
            let t = &mut state.traces;
            t.jumped_from = Some(id);
            t.pending_jump = Some((request_id, step));
            t.follow = false;
            state.pane = Pane::Traces;
            let mut fx = open_pending(state);
            fx.extend(load_index(state));
            fx
        }
    }
}

/// Opens a jump's target once the index holds its invocation: the step's events in full.
fn open_pending(state: &mut AppState) -> Vec<Effect> {
    let Some((request_id, step)) = state.traces.pending_jump.clone() else {
        return Vec::new();
    };
    let Some(inv) = state.traces.index.invocation_by_request(&request_id) else {
        return Vec::new();
    };
    state.traces.pending_jump = None;
    let session = state.traces.index.invocations[inv as usize].session;
    let selected = state.traces.index.sessions[session as usize]
        .invocations
        .iter()
        .position(|i| *i == inv)
        .unwrap_or(0);
    state.traces.session = Some(SessionView { session, selected });
    let n = step.unwrap_or(1);
    let mut fx = open_turn(
        state,
        inv,
        usize::try_from(n.saturating_sub(1)).unwrap_or(0),
    );
    if step.is_some() {
        let tag = state.tag();
        if let Some(turn) = state.traces.turn.as_mut() {
            turn.step = Some(StepView {
                step: n,
                tag,
                events: None,
                scroll: 0,
                max_scroll: u16::MAX,
            });
            fx.push(Effect::LoadStepEvents {
                tag,
                request_id,
                step: n,
            });
        }
    }
    fx
}

/// The request a step raised: the invocationId of its return-of-control call.
fn raised_request(state: &AppState) -> Option<ApprovalId> {
    let Some(Ok(events)) = &state.traces.turn.as_ref()?.step.as_ref()?.events else {
        return None;
    };
    events.iter().find_map(|e| match e.event().kind {
        TraceKind::Step {
            event: StepEvent::InvocationInput(i),
            ..
        } => match i.detail {
            InvocationDetail::ActionGroup {
                execution_type,
                invocation_id,
                ..
            } if execution_type.as_deref() == Some("RETURN_CONTROL") => {
                invocation_id.map(ApprovalId)
            }
            _ => None,
        },
        TraceKind::Step {
            event: StepEvent::Observation(o),
            ..
        } => match o.detail {
            ObservationDetail::AgentCollaborator {
                return_control_invocation_id,
                ..
            } => return_control_invocation_id.map(ApprovalId),
            _ => None,
        },
        _ => None,
    })
}

/// What `y` copies where the pane is: an open step's readable text and raw JSON, else the
/// selected step's, invocation's or session's id. Sanitised: it reaches a terminal.
fn selection_text(state: &AppState) -> Option<String> {
    let t = &state.traces;
    if let Some(turn) = &t.turn {
        if let Some(Some(Ok(events))) = turn.step.as_ref().map(|s| &s.events) {
            let mut out = String::new();
            for e in events {
                for (label, text) in crate::domain::step_kind::sections(&e.event()) {
                    out.push_str(label);
                    out.push_str(": ");
                    out.push_str(&text);
                    out.push('\n');
                }
                out.push_str(&serde_json::to_string_pretty(&e.raw).unwrap_or_default());
                out.push('\n');
            }
            return Some(crate::domain::sanitize::block(&out).into_owned());
        }
        let (request, step, _) = t.selected_step()?;
        return Some(crate::domain::sanitize::line(&format!("{request} step {step}")).into_owned());
    }
    let session = selected_session(state)?;
    Some(
        crate::domain::sanitize::line(
            t.index
                .names
                .name(t.index.sessions[session as usize].session),
        )
        .into_owned(),
    )
}

/// The session under the selection (open, or selected in the list).
fn selected_session(state: &AppState) -> Option<u32> {
    let t = &state.traces;
    if let Some(turn) = &t.turn {
        return t
            .index
            .invocations
            .get(turn.invocation as usize)
            .map(|i| i.session);
    }
    if let Some(sv) = &t.session {
        return Some(sv.session);
    }
    if let Some(results) = &t.results {
        let pos = *results.get(t.selected)?;
        let inv = *t.index.steps.invocation.get(pos as usize)?;
        return t.index.invocations.get(inv as usize).map(|i| i.session);
    }
    t.index.recent.get(t.selected).copied()
}

/// Judges the selected step's action, when it is an executed action-group step.
fn mark_step(state: &mut AppState, appropriate: bool) -> Vec<Effect> {
    let t = &state.traces;
    let Some((request_id, step, trace_id)) = t.selected_step() else {
        say(
            state,
            Level::Info,
            "open an invocation and select an action-group step to mark it",
        );
        return Vec::new();
    };
    let kinds = t
        .turn
        .as_ref()
        .and_then(|turn| t.index.step_pos(turn.invocation, step))
        .map(|pos| t.index.step_kinds(pos));
    if !kinds.is_some_and(|k| k.contains(StepKinds::ACTION_GROUP)) {
        say(
            state,
            Level::Info,
            format!("step {step} ran no action group: only an executed action can be marked"),
        );
        return Vec::new();
    }
    let effect = Effect::MarkStep {
        request_id: request_id.to_owned(),
        step,
        trace_id: trace_id.map(str::to_owned),
        appropriate,
        who: state.reviewer.clone(),
    };
    say(state, Level::Info, "recording the mark…");
    vec![effect]
}

pub fn action(state: &mut AppState, action: Action) -> Vec<Effect> {
    let page = state.list_height();
    if action == Action::Copy {
        return match selection_text(state) {
            Some(text) => {
                let n = text.chars().count();
                say(
                    state,
                    Level::Info,
                    format!("copied {n} characters to the clipboard (OSC 52)"),
                );
                vec![Effect::Copy { text }]
            }
            None => Vec::new(),
        };
    }
    if action == Action::Export {
        let Some(s) = selected_session(state) else {
            return Vec::new();
        };
        let t = &state.traces;
        let session = t
            .index
            .names
            .name(t.index.sessions[s as usize].session)
            .to_owned();
        say(state, Level::Info, "exporting the session…");
        return vec![Effect::ExportSession { session }];
    }
    if matches!(action, Action::MarkGood | Action::MarkBad) {
        return mark_step(state, action == Action::MarkGood);
    }
    if action == Action::Jump {
        let target = state
            .traces
            .jumped_from
            .take()
            .or_else(|| raised_request(state));
        if let Some(id) = target {
            return open_request(state, id);
        }
        say(
            state,
            Level::Info,
            "open a step that returned control to jump to its request",
        );
        return Vec::new();
    }
    if action == Action::Follow {
        state.traces.follow = !state.traces.follow;
        if state.traces.follow {
            follow_latest(state);
            say(
                state,
                Level::Info,
                "following the latest invocation (f stops)",
            );
            return load_rows(state, true);
        }
        say(state, Level::Info, "follow mode off");
        return Vec::new();
    }
    if action == Action::Filter {
        let t = &mut state.traces;
        t.filter_editing = true;
        return Vec::new();
    }
    // Moving by hand stops following.
    if matches!(
        action,
        Action::MoveUp | Action::PageUp | Action::Top | Action::Back
    ) {
        state.traces.follow = false;
    }
    let tag = state.next_tag;
    let t = &mut state.traces;
    if let Some(turn) = t.turn.as_mut() {
        if let Some(step) = turn.step.as_mut() {
            let page = u16::try_from(page).unwrap_or(u16::MAX);
            match action {
                Action::Back => turn.step = None,
                Action::MoveUp => step.scroll = step.scroll.saturating_sub(1),
                Action::MoveDown => {
                    step.scroll = step.scroll.saturating_add(1).min(step.max_scroll);
                }
                Action::PageUp => step.scroll = step.scroll.saturating_sub(page),
                Action::PageDown => {
                    step.scroll = step.scroll.saturating_add(page).min(step.max_scroll);
                }
                Action::Top => step.scroll = 0,
                Action::Bottom => step.scroll = step.max_scroll,
                _ => {}
            }
            return Vec::new();
        }
        let inv = &t.index.invocations[turn.invocation as usize];
        match action {
            Action::Back => {
                t.turn = None;
                return Vec::new();
            }
            Action::Open => {
                let Some(pos) = inv.steps.get(turn.selected).copied().filter(|p| *p != NONE) else {
                    return Vec::new();
                };
                let step = u64::from(t.index.steps.number[pos as usize]);
                state.next_tag += 1;
                turn.step = Some(StepView {
                    step,
                    tag,
                    events: None,
                    scroll: 0,
                    max_scroll: u16::MAX,
                });
                return vec![Effect::LoadStepEvents {
                    tag,
                    request_id: turn.request_id.clone(),
                    step,
                }];
            }
            _ => {
                turn.selected = moved(turn.selected, action, inv.steps.len(), page);
                return load_rows(state, false);
            }
        }
    }
    if let Some(sv) = t.session.as_mut() {
        let invs = &t.index.sessions[sv.session as usize].invocations;
        match action {
            Action::Back => t.session = None,
            Action::Open => {
                if let Some(inv) = invs.get(sv.selected).copied() {
                    return open_turn(state, inv, 0);
                }
            }
            _ => sv.selected = moved(sv.selected, action, invs.len(), page),
        }
        return Vec::new();
    }
    let len = top_len(state);
    let t = &mut state.traces;
    match action {
        Action::Back if t.results.is_some() || !t.filter_line.is_empty() => {
            t.filter_line.clear();
            t.filter = StepFilter::default();
            t.hits = None;
            t.results = None;
            t.selected = 0;
        }
        Action::Open => {
            if let Some(results) = &t.results {
                let Some(pos) = results.get(t.selected).copied() else {
                    return Vec::new();
                };
                let inv = t.index.steps.invocation[pos as usize];
                let n = t.index.steps.number[pos as usize] as usize;
                return open_turn(state, inv, n.saturating_sub(1));
            }
            if let Some(s) = t.index.recent.get(t.selected).copied() {
                t.session = Some(SessionView {
                    session: s,
                    selected: 0,
                });
            }
        }
        _ => t.selected = moved(t.selected, action, len, page),
    }
    Vec::new()
}

/// Editing the filter line: Enter applies it (and starts the search for free text), Esc clears
/// it. A bad filter stays on the line with an error naming what was wrong.
pub fn filter_key(state: &mut AppState, edit: Option<Edit>) -> Vec<Effect> {
    let t = &mut state.traces;
    match edit {
        Some(Edit::Char(c)) if !c.is_control() => push_limited(&mut t.filter_line, &c.to_string()),
        Some(Edit::Backspace) => {
            t.filter_line.pop();
        }
        Some(Edit::Esc) => {
            t.filter_editing = false;
            t.filter_line.clear();
            t.filter = StepFilter::default();
            t.hits = None;
            t.results = None;
        }
        Some(Edit::Enter) => match StepFilter::parse(&t.filter_line) {
            Err(e) => say(state, Level::Error, e),
            Ok(f) => {
                t.filter_editing = false;
                t.session = None;
                t.turn = None;
                t.follow = false;
                t.selected = 0;
                t.hits = None;
                let text = f.text.clone();
                t.filter = f;
                refilter(state);
                if !text.is_empty() {
                    let tag = state.next_tag;
                    state.next_tag += 1;
                    state.traces.search_tag = tag;
                    state.traces.searching = true;
                    return vec![Effect::SearchTraces { tag, text }];
                }
            }
        },
        _ => {}
    }
    Vec::new()
}
