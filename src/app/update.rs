//! `update`: folds one message into the state and returns the IO to perform. Pure and total.

use chrono::{DateTime, Utc};

use super::action::Action;
use super::msg::{Edit, Effect, KeyInput, Msg};
use super::state::{
    ARM_WINDOW, AppState, Armed, Detail, Intent, Level, MESSAGE_TTL, Message, Pane, Prompt,
};
use super::traces::{self, index_loaded, load_index, search_done};
use crate::domain::approval::{ActionTarget, ApprovalId, ApprovalRequest};
use crate::domain::decision::{DecisionAsk, Verdict};
use crate::domain::policy::{Confirmation, RiskTier};
use crate::domain::sanitize;
use crate::domain::status::{InputState, input_states};
use crate::store::QueueRow;

/// The most characters a reason may hold.
pub const MAX_REASON: usize = 1000;

/// The effects to run when the console starts.
pub fn init(state: &mut AppState) -> Vec<Effect> {
    let mut fx = vec![Effect::ExpireDue];
    fx.extend(reload(state));
    fx
}

pub fn update(state: &mut AppState, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::Tick(now) => tick(state, now),
        Msg::Resize { width, height } => {
            state.width = width;
            state.height = height;
            Vec::new()
        }
        Msg::StoreChanged => reload(state),
        Msg::QueueLoaded { tag, result } => queue_loaded(state, tag, result),
        Msg::CountsLoaded { tag, result } => {
            if tag == state.counts_tag {
                state.loading_counts = false;
                match result {
                    Ok(c) => {
                        state.counts = Some(*c);
                        state.store_error = None;
                    }
                    Err(e) => state.store_error = Some(e),
                }
                if std::mem::take(&mut state.counts_again) && state.pane != Pane::Approvals {
                    return load_counts(state);
                }
            }
            Vec::new()
        }
        Msg::MetricsLoaded { tag, result } => metrics_loaded(state, tag, result),
        Msg::DetailLoaded { tag, result } => {
            if let Some(d) = state.detail.as_mut().filter(|d| d.tag == tag) {
                match result {
                    Ok(stored) => {
                        d.selected_input = d
                            .selected_input
                            .min(stored.request.inputs.len().saturating_sub(1));
                        d.loaded = Some(stored);
                        d.load_error = None;
                    }
                    Err(e) => d.load_error = Some(e),
                }
            }
            Vec::new()
        }
        Msg::Decided { tag, result } => decided(state, tag, result),
        Msg::Expired { result } => match result {
            Ok(0) => Vec::new(),
            Ok(_) => reload(state),
            Err(e) => {
                state.store_error = Some(e);
                Vec::new()
            }
        },
        Msg::Paste(text) => {
            let clean: String = text.chars().filter(|c| !c.is_control()).collect();
            if let Some(Prompt::Reason { text, .. } | Prompt::Word { text, .. }) =
                state.prompt.as_mut()
            {
                push_limited(text, &clean);
            } else if state.filter_editing {
                push_limited(&mut state.filter, &clean);
                refilter(state);
            }
            Vec::new()
        }
        Msg::Key(input) => key(state, &input),
        Msg::StepMaxScroll(max) => {
            if let Some(v) = state.traces.turn.as_mut().and_then(|t| t.step.as_mut()) {
                v.max_scroll = max;
                v.scroll = v.scroll.min(max);
            }
            Vec::new()
        }
        Msg::StepsLoaded { tag, result } => {
            if let Some(t) = state.traces.turn.as_mut().filter(|t| t.tag == tag) {
                t.steps = Some(result);
            }
            Vec::new()
        }
        Msg::TraceIndexLoaded { tag, result } => index_loaded(state, tag, result),
        Msg::TraceSearchDone { tag, result } => search_done(state, tag, result),
        Msg::RaisingStepFound { tag, id, result } => traces::raising_found(state, tag, id, result),
        Msg::Marked { result } => {
            match result {
                Ok(what) => say(state, Level::Success, what),
                Err(e) => say(state, Level::Error, format!("mark NOT recorded: {e}")),
            }
            Vec::new()
        }
        Msg::BedrockLoaded { window, result } => {
            // A read for a window no longer chosen: the read for the chosen one follows.
            if window != state.metrics.window {
                return Vec::new();
            }
            state.metrics.bedrock_window = window;
            state.metrics.bedrock = match result {
                Ok(v) => crate::app::state::BedrockView::Loaded(v),
                Err(e) => crate::app::state::BedrockView::Failed(e),
            };
            Vec::new()
        }
        Msg::BedrockDue => load_bedrock(state),
        Msg::Published { result } => {
            // Only a failure is news: a publish every minute would drown the status line.
            if let Err(e) = result {
                say(
                    state,
                    Level::Error,
                    format!("CloudWatch publish failed: {e}"),
                );
            }
            Vec::new()
        }
        Msg::Exported { result } => {
            match result {
                Ok(path) => say(state, Level::Success, format!("exported to {path}")),
                Err(e) => say(state, Level::Error, format!("export failed: {e}")),
            }
            Vec::new()
        }
        Msg::StepEventsLoaded { tag, result } => {
            if let Some(v) = state
                .traces
                .turn
                .as_mut()
                .and_then(|t| t.step.as_mut())
                .filter(|v| v.tag == tag)
            {
                v.events = Some(result);
            }
            Vec::new()
        }
        Msg::DetailMaxScroll(max) => {
            if let Some(d) = state.detail.as_mut() {
                d.max_scroll = max;
                d.scroll = d.scroll.min(max);
            }
            Vec::new()
        }
    }
}

pub(super) fn push_limited(buf: &mut String, add: &str) {
    for c in add.chars() {
        if buf.chars().count() >= MAX_REASON {
            break;
        }
        buf.push(c);
    }
}

pub(super) fn say(state: &mut AppState, level: Level, text: impl Into<String>) {
    state.message = Some(Message {
        level,
        text: text.into(),
        at: state.now,
    });
}

fn tick(state: &mut AppState, now: DateTime<Utc>) -> Vec<Effect> {
    state.now = now;
    if let Some(m) = &state.message {
        if m.level < Level::Error && now - m.at > MESSAGE_TTL {
            state.message = None;
        }
    }
    if state
        .armed
        .as_ref()
        .is_some_and(|a| now - a.at > ARM_WINDOW)
    {
        state.armed = None;
    }
    // The windows slide with the clock: the metrics pane refreshes every tick it is shown.
    let mut fx = if state.pane == Pane::Metrics {
        load_metrics(state)
    } else {
        Vec::new()
    };
    if state.queue.iter().any(|r| r.expires_at <= now) {
        fx.push(Effect::ExpireDue);
    }
    fx
}

/// Asks the engine for a fresh snapshot, one at a time.
fn load_metrics(state: &mut AppState) -> Vec<Effect> {
    let m = &mut state.metrics;
    if m.loading {
        m.again = true;
        return Vec::new();
    }
    m.loading = true;
    let tag = state.tag();
    state.metrics.tag = tag;
    vec![Effect::LoadMetrics {
        tag,
        window: state.metrics.window,
        filter: state.metrics.filter.clone(),
    }]
}

fn metrics_loaded(
    state: &mut AppState,
    tag: u64,
    result: Result<Box<super::msg::MetricsLoad>, String>,
) -> Vec<Effect> {
    let m = &mut state.metrics;
    if tag != m.tag {
        return Vec::new();
    }
    m.loading = false;
    match result {
        Ok(load) => {
            let load = *load;
            // A snapshot taken before the window or filter changed is not shown.
            if load.snapshot.window == m.window && load.snapshot.filter == m.filter {
                m.snapshot = Some(Box::new(load.snapshot));
            }
            m.dimensions = load.dimensions;
            m.error = None;
        }
        Err(e) => m.error = Some(e),
    }
    if std::mem::take(&mut m.again) && state.pane == Pane::Metrics {
        return load_metrics(state);
    }
    Vec::new()
}

/// The metrics pane's keys: window and filters.
fn metrics_action(state: &mut AppState, action: Action) -> Vec<Effect> {
    use crate::domain::metrics::cycle;
    let m = &mut state.metrics;
    match action {
        Action::MetricsWindow => m.window = m.window.next(),
        Action::MetricsAgent => {
            m.filter.agent = cycle(m.filter.agent.as_ref(), &m.dimensions.agents);
        }
        Action::MetricsAlias => {
            m.filter.alias = cycle(m.filter.alias.as_ref(), &m.dimensions.aliases);
        }
        Action::MetricsModel => {
            m.filter.model = cycle(m.filter.model.as_ref(), &m.dimensions.models);
        }
        Action::Back => {
            if m.filter.is_all() {
                return Vec::new();
            }
            m.filter = crate::domain::metrics::Filter::default();
        }
        _ => return Vec::new(),
    }
    // The figures on screen are for the old choice until the new ones arrive.
    m.snapshot = None;
    // Bedrock's figures follow the window (CloudWatch has no agentdeck filters).
    let mut fx = if action == Action::MetricsWindow {
        load_bedrock(state)
    } else {
        Vec::new()
    };
    let m = &mut state.metrics;
    m.again = true;
    if m.loading {
        return fx;
    }
    m.again = false;
    fx.extend(load_metrics(state));
    fx
}

/// Asks for Bedrock's CloudWatch figures over the chosen window, when a CloudWatch endpoint
/// is configured.
fn load_bedrock(state: &mut AppState) -> Vec<Effect> {
    let m = &mut state.metrics;
    if m.bedrock == crate::app::state::BedrockView::NotConfigured {
        return Vec::new();
    }
    if m.bedrock_window != m.window {
        m.bedrock = crate::app::state::BedrockView::Loading;
    }
    vec![Effect::LoadBedrock { window: m.window }]
}

/// Asks for fresh copies of whatever is on screen; coalesces while a load is in flight.
fn reload(state: &mut AppState) -> Vec<Effect> {
    let mut fx = Vec::new();
    if state.loading_queue {
        state.reload_again = true;
    } else {
        state.loading_queue = true;
        state.queue_tag = state.tag();
        fx.push(Effect::LoadQueue {
            tag: state.queue_tag,
        });
    }
    if state.pane != Pane::Approvals {
        fx.extend(load_counts(state));
    }
    if state.pane == Pane::Metrics {
        fx.extend(load_metrics(state));
    }
    if state.pane == Pane::Traces {
        fx.extend(load_index(state));
    }
    let tag = state.tag();
    if let Some(d) = state.detail.as_mut() {
        d.tag = tag;
        fx.push(Effect::LoadDetail {
            tag,
            id: d.id.clone(),
        });
    }
    fx
}

/// Sorts the queue as every view shows it: riskiest first, then least time left, then id.
pub fn sort_queue(rows: &mut [QueueRow]) {
    rows.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
}

fn sort_key(r: &QueueRow) -> (std::cmp::Reverse<RiskTier>, DateTime<Utc>, &str) {
    (std::cmp::Reverse(r.tier), r.expires_at, r.id.as_str())
}

fn queue_loaded(
    state: &mut AppState,
    tag: u64,
    result: Result<Vec<QueueRow>, String>,
) -> Vec<Effect> {
    if tag != state.queue_tag {
        return Vec::new();
    }
    state.loading_queue = false;
    match result {
        Ok(mut rows) => {
            let keep = state.selected_row().map(|r| r.id.clone());
            sort_queue(&mut rows);
            state.queue = rows;
            state.queue_loaded = true;
            state.store_error = None;
            refilter(state);
            if let Some(id) = keep {
                if let Some(pos) = state.view.iter().position(|i| state.queue[*i].id == id) {
                    state.selected = pos;
                }
            }
        }
        Err(e) => {
            state.store_error = Some(e);
        }
    }
    if std::mem::take(&mut state.reload_again) {
        return reload(state);
    }
    Vec::new()
}

/// Whether a row matches every whitespace-separated term of the filter (case-insensitive).
pub fn row_matches(row: &QueueRow, terms: &[String]) -> bool {
    if terms.is_empty() {
        return true;
    }
    let mut hay = format!(
        "{} {} {} {} {} {} {} {}",
        row.id,
        row.agent_id,
        row.agent_alias_id,
        row.session_id,
        row.action,
        row.tier,
        row.reason,
        row.rule.as_deref().unwrap_or("")
    );
    for (n, v) in &row.key_params {
        hay.push(' ');
        hay.push_str(n);
        hay.push('=');
        hay.push_str(v);
    }
    let hay = hay.to_lowercase();
    terms.iter().all(|t| hay.contains(t.as_str()))
}

fn refilter(state: &mut AppState) {
    let terms: Vec<String> = state
        .filter
        .split_whitespace()
        .map(str::to_lowercase)
        .collect();
    state.view = state
        .queue
        .iter()
        .enumerate()
        .filter(|(_, r)| row_matches(r, &terms))
        .map(|(i, _)| i)
        .collect();
    state.selected = state.selected.min(state.view.len().saturating_sub(1));
}

fn key(state: &mut AppState, input: &KeyInput) -> Vec<Effect> {
    state.now = state.now.max(input.at);
    if input.edit.is_none() && state.keymap.resolve(&input.key) == Some(Action::Quit) {
        return quit(state);
    }
    if state.prompt.is_some() {
        return prompt_key(state, input.edit);
    }
    if state.pane == Pane::Traces && state.traces.filter_editing {
        return traces::filter_key(state, input.edit);
    }
    if state.filter_editing {
        return filter_key(state, input.edit);
    }
    let Some(action) = state.keymap.resolve(&input.key) else {
        return Vec::new();
    };
    if state.help {
        // The help can be longer than a small terminal: it scrolls.
        let s = state.help_scroll;
        let max = state.help_max_scroll.get();
        match action {
            Action::Back | Action::Help => state.help = false,
            Action::Quit => return quit(state),
            Action::MoveDown => state.help_scroll = s.saturating_add(1).min(max),
            Action::MoveUp => state.help_scroll = s.saturating_sub(1),
            Action::PageDown => state.help_scroll = s.saturating_add(10).min(max),
            Action::PageUp => state.help_scroll = s.saturating_sub(10),
            Action::Top => state.help_scroll = 0,
            _ => {}
        }
        return Vec::new();
    }
    match action {
        Action::Quit => return quit(state),
        Action::Help => {
            state.help = true;
            state.help_scroll = 0;
            return Vec::new();
        }
        Action::NextPane => return switch_pane(state, Pane::ALL[(state.pane.index() + 1) % 3]),
        Action::PrevPane => return switch_pane(state, Pane::ALL[(state.pane.index() + 2) % 3]),
        Action::PaneApprovals => return switch_pane(state, Pane::Approvals),
        Action::PaneTraces => return switch_pane(state, Pane::Traces),
        Action::PaneMetrics => return switch_pane(state, Pane::Metrics),
        _ => {}
    }
    if state.pane == Pane::Traces {
        return traces::action(state, action);
    }
    if state.pane == Pane::Metrics {
        return metrics_action(state, action);
    }
    if state.pane != Pane::Approvals {
        return Vec::new();
    }
    if state.detail.is_some() {
        detail_action(state, action)
    } else {
        list_action(state, action)
    }
}

fn quit(state: &mut AppState) -> Vec<Effect> {
    state.quit = true;
    vec![Effect::Quit]
}

fn switch_pane(state: &mut AppState, pane: Pane) -> Vec<Effect> {
    state.pane = pane;
    if pane == Pane::Approvals {
        return Vec::new();
    }
    let mut fx = load_counts(state);
    if pane == Pane::Traces {
        fx.extend(load_index(state));
    }
    if pane == Pane::Metrics {
        fx.extend(load_metrics(state));
    }
    fx
}

/// Reads the store's totals, one read at a time: a read asked for while one is in flight
/// happens once, after it.
fn load_counts(state: &mut AppState) -> Vec<Effect> {
    if state.loading_counts {
        state.counts_again = true;
        return Vec::new();
    }
    state.loading_counts = true;
    state.counts_tag = state.tag();
    vec![Effect::LoadCounts {
        tag: state.counts_tag,
    }]
}

fn list_action(state: &mut AppState, action: Action) -> Vec<Effect> {
    let last = state.view.len().saturating_sub(1);
    let page = state.list_height();
    match action {
        Action::MoveUp => state.selected = state.selected.saturating_sub(1),
        Action::MoveDown => state.selected = (state.selected + 1).min(last),
        Action::PageUp => state.selected = state.selected.saturating_sub(page),
        Action::PageDown => state.selected = (state.selected + page).min(last),
        Action::Top => state.selected = 0,
        Action::Bottom => state.selected = last,
        Action::Filter => state.filter_editing = true,
        Action::Back if !state.filter.is_empty() => {
            state.filter.clear();
            refilter(state);
        }
        Action::Open => return open_detail(state, None),
        Action::Jump => {
            if let Some(id) = state.selected_row().map(|r| r.id.clone()) {
                return traces::find_raising(state, id);
            }
        }
        Action::Approve | Action::Reject | Action::ApproveAll | Action::RejectAll => {
            return open_detail(state, Some(action));
        }
        _ => {}
    }
    Vec::new()
}

/// Opens the selected request. With `arm`, the key that opened it counts as a first press: the
/// full request is on screen, and the same key again goes on with the decision.
fn open_detail(state: &mut AppState, arm: Option<Action>) -> Vec<Effect> {
    let Some(row) = state.selected_row() else {
        say(state, Level::Info, "the queue is empty");
        return Vec::new();
    };
    let id = row.id.clone();
    let fx = open_request(state, id.clone());
    if let Some(action) = arm {
        state.armed = Some(Armed {
            action,
            id: id.clone(),
            at: state.now,
        });
        let key = state
            .keymap
            .keys_for(action)
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        say(
            state,
            Level::Info,
            format!(
                "review the full request; press {key} again to {}",
                action.short()
            ),
        );
    }
    fx
}

/// Opens one request in full, on the approvals pane.
pub(super) fn open_request(state: &mut AppState, id: ApprovalId) -> Vec<Effect> {
    state.pane = Pane::Approvals;
    let tag = state.tag();
    state.detail = Some(Detail {
        id: id.clone(),
        tag,
        loaded: None,
        load_error: None,
        selected_input: 0,
        scroll: 0,
        max_scroll: u16::MAX,
        opened_at: state.now,
    });
    vec![Effect::LoadDetail { tag, id }]
}

fn detail_action(state: &mut AppState, action: Action) -> Vec<Effect> {
    let Some(d) = state.detail.as_mut() else {
        return Vec::new();
    };
    let inputs = d.loaded.as_ref().map_or(1, |s| s.request.inputs.len());
    let page = state.height.saturating_sub(8).max(1);
    match action {
        Action::Back => {
            state.detail = None;
            state.armed = None;
        }
        Action::MoveUp => {
            d.selected_input = d.selected_input.saturating_sub(1);
            d.scroll = 0;
        }
        Action::MoveDown => {
            d.selected_input = (d.selected_input + 1).min(inputs - 1);
            d.scroll = 0;
        }
        Action::PageUp => d.scroll = d.scroll.saturating_sub(page),
        Action::PageDown => d.scroll = d.scroll.saturating_add(page).min(d.max_scroll),
        Action::Top => d.scroll = 0,
        Action::Bottom => d.scroll = d.max_scroll,
        Action::Approve | Action::Reject | Action::ApproveAll | Action::RejectAll => {
            return begin_decision(state, action);
        }
        Action::Jump => {
            let id = d.id.clone();
            return traces::find_raising(state, id);
        }
        _ => {}
    }
    Vec::new()
}

/// Moves a selection within `len` rows.
pub(super) fn moved(selected: usize, action: Action, len: usize, page: usize) -> usize {
    let last = len.saturating_sub(1);
    match action {
        Action::MoveUp => selected.saturating_sub(1),
        Action::MoveDown => (selected + 1).min(last),
        Action::PageUp => selected.saturating_sub(page),
        Action::PageDown => (selected + page).min(last),
        Action::Top => 0,
        Action::Bottom => last,
        _ => selected,
    }
}

/// The word a typed confirmation asks for: the function name, or the last literal segment of
/// the API path.
pub fn confirm_word(request: &ApprovalRequest, index: usize) -> String {
    match request.inputs.get(index).map(|i| &i.target) {
        Some(ActionTarget::Function { function }) => function.clone(),
        Some(ActionTarget::Api { api_path, .. }) => api_path
            .rsplit('/')
            .find(|s| !s.is_empty() && !s.starts_with('{'))
            .unwrap_or(api_path)
            .to_owned(),
        None => String::new(),
    }
}

fn begin_decision(state: &mut AppState, action: Action) -> Vec<Effect> {
    if state.deciding.is_some() {
        say(
            state,
            Level::Warn,
            "a decision is being recorded; wait for the store to answer",
        );
        return Vec::new();
    }
    let Some(d) = state.detail.as_ref() else {
        return Vec::new();
    };
    let Some(stored) = d.loaded.as_deref() else {
        say(state, Level::Warn, "the request is still loading");
        return Vec::new();
    };
    if stored.status.is_final() {
        let s = stored.status;
        say(
            state,
            Level::Warn,
            format!("this request is {s}; there is nothing left to decide"),
        );
        return Vec::new();
    }
    let verdict = match action {
        Action::Approve | Action::ApproveAll => Verdict::Confirm,
        _ => Verdict::Deny,
    };
    let all = matches!(action, Action::ApproveAll | Action::RejectAll);
    let request = &stored.request;
    let candidates: Vec<usize> = if all {
        (0..request.inputs.len()).collect()
    } else {
        vec![d.selected_input]
    };
    let mut chosen = Vec::new();
    let mut why_not = None;
    let states = input_states(request, &stored.decisions, &state.policy);
    for i in candidates {
        let tier = request.input_tier(i);
        let needed = state.policy.requirements(tier).approvers;
        let Some(input_state) = states.get(i).cloned() else {
            continue;
        };
        match input_state {
            InputState::Confirmed { by, .. } => {
                why_not = Some(format!(
                    "input {} is already confirmed by {}",
                    i + 1,
                    by.join(" and ")
                ));
            }
            InputState::Denied { by, .. } => {
                why_not = Some(format!("input {} is already denied by {by}", i + 1));
            }
            InputState::Approving { approvers }
                if verdict == Verdict::Confirm && approvers.contains(&state.reviewer) =>
            {
                why_not = Some(format!(
                    "you already approved input {}; {needed} different reviewers must approve a {tier}-risk action",
                    i + 1
                ));
            }
            InputState::Pending | InputState::Approving { .. } => chosen.push(i),
        }
    }
    if chosen.is_empty() {
        let text = why_not.unwrap_or_else(|| "nothing to decide".to_owned());
        say(state, Level::Warn, text);
        return Vec::new();
    }
    let tier = chosen
        .iter()
        .filter_map(|i| request.assessments.get(*i).map(|a| a.tier))
        .max()
        .unwrap_or(RiskTier::Critical);
    let inputs: Vec<(usize, String)> = chosen
        .iter()
        .filter_map(|i| request.input_hash(*i).map(|h| (*i, h)))
        .collect();
    let intent = Intent {
        id: request.id.clone(),
        verdict,
        inputs,
        tier,
        requirements: state.policy.requirements(tier),
        action,
        word: confirm_word(request, chosen[0]),
        reason: None,
    };
    if verdict == Verdict::Deny || intent.requirements.reason_required {
        state.message = None;
        state.prompt = Some(Prompt::Reason {
            intent,
            text: String::new(),
        });
        return Vec::new();
    }
    confirm_step(state, intent, false)
}

/// After any reason: the tier's confirmation, then the decision.
fn confirm_step(state: &mut AppState, intent: Intent, reason_given: bool) -> Vec<Effect> {
    if intent.verdict == Verdict::Deny {
        return decide(state, intent);
    }
    match intent.requirements.confirmation {
        Confirmation::None => decide(state, intent),
        Confirmation::SecondPress => {
            let armed = state.armed.as_ref().is_some_and(|a| {
                a.id == intent.id && a.action == intent.action && state.now - a.at <= ARM_WINDOW
            });
            if armed || reason_given {
                decide(state, intent)
            } else {
                let key = state
                    .keymap
                    .keys_for(intent.action)
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let tier = intent.tier.word().to_uppercase();
                state.armed = Some(Armed {
                    action: intent.action,
                    id: intent.id.clone(),
                    at: state.now,
                });
                say(
                    state,
                    Level::Warn,
                    format!("{tier} risk: press {key} again within 5 s to approve"),
                );
                Vec::new()
            }
        }
        Confirmation::TypedWord => {
            state.message = None;
            state.prompt = Some(Prompt::Word {
                intent,
                text: String::new(),
            });
            Vec::new()
        }
    }
}

fn decide(state: &mut AppState, intent: Intent) -> Vec<Effect> {
    state.armed = None;
    let tag = state.tag();
    let dwell_ms = state
        .detail
        .as_ref()
        .map(|d| (state.now - d.opened_at).num_milliseconds().max(0) as u64);
    let ask = DecisionAsk {
        request: intent.id.clone(),
        verdict: intent.verdict,
        inputs: intent.inputs.clone(),
        reviewer: state.reviewer.clone(),
        reason: intent.reason.clone(),
        dwell_ms,
    };
    let verb = if intent.verdict == Verdict::Confirm {
        "approval"
    } else {
        "rejection"
    };
    say(state, Level::Info, format!("recording the {verb}…"));
    state.deciding = Some((tag, intent));
    vec![Effect::Decide { tag, ask }]
}

fn decided(
    state: &mut AppState,
    tag: u64,
    result: Result<crate::store::DecisionOutcome, super::msg::StoreFailure>,
) -> Vec<Effect> {
    let Some((t, intent)) = state.deciding.take() else {
        return Vec::new();
    };
    if t != tag {
        state.deciding = Some((t, intent));
        return Vec::new();
    }
    let short = short_id(&intent.id);
    match result {
        Ok(outcome) => {
            let n = outcome.decisions.len();
            let verb = if intent.verdict == Verdict::Confirm {
                "approved"
            } else {
                "rejected"
            };
            let plural = if n == 1 { "input" } else { "inputs" };
            let text = if outcome.status.is_final() {
                format!(
                    "{verb} {n} {plural} of {short}: request is now {}",
                    outcome.status
                )
            } else if intent.verdict == Verdict::Confirm && intent.requirements.approvers > 1 {
                format!(
                    "approval recorded: {short} needs {} distinct approvers; waiting for another",
                    intent.requirements.approvers
                )
            } else {
                format!(
                    "{verb} {n} {plural} of {short}: recorded; request still {}",
                    outcome.status
                )
            };
            say(state, Level::Success, text);
            if outcome.status.is_final() && state.detail.as_ref().is_some_and(|d| d.id == intent.id)
            {
                state.detail = None;
            }
        }
        Err(f) if f.refused => say(state, Level::Error, format!("not recorded: {}", f.message)),
        Err(f) => say(
            state,
            Level::Error,
            format!(
                "decision NOT recorded ({}); press the key again to retry (a retry never \
                 decides twice: if the write landed after all, the store says who decided)",
                f.message
            ),
        ),
    }
    reload(state)
}

/// The first 8 characters of an id, for messages (the full id is in the detail).
pub fn short_id(id: &ApprovalId) -> String {
    let s = sanitize::line(id.as_str());
    s.chars().take(8).collect()
}

fn prompt_key(state: &mut AppState, edit: Option<Edit>) -> Vec<Effect> {
    let Some(edit) = edit else {
        return Vec::new();
    };
    let Some(prompt) = state.prompt.as_mut() else {
        return Vec::new();
    };
    let text = match prompt {
        Prompt::Reason { text, .. } | Prompt::Word { text, .. } => text,
    };
    match edit {
        Edit::Char(c) => {
            if !c.is_control() {
                push_limited(text, &c.to_string());
            }
            Vec::new()
        }
        Edit::Backspace => {
            text.pop();
            Vec::new()
        }
        Edit::Esc => {
            state.prompt = None;
            state.armed = None;
            say(state, Level::Info, "cancelled; nothing was recorded");
            Vec::new()
        }
        Edit::Enter => match state.prompt.take() {
            Some(Prompt::Reason { mut intent, text }) => {
                if text.trim().is_empty() {
                    state.prompt = Some(Prompt::Reason { intent, text });
                    say(state, Level::Warn, "a reason is required");
                    return Vec::new();
                }
                intent.reason = Some(text.trim().to_owned());
                confirm_step(state, intent, true)
            }
            Some(Prompt::Word { intent, text }) => {
                if text == intent.word {
                    decide(state, intent)
                } else {
                    let msg = format!(
                        "typed {:?}, expected {:?}: nothing was recorded; type it again or Esc",
                        sanitize::line(&text),
                        sanitize::line(&intent.word)
                    );
                    state.prompt = Some(Prompt::Word {
                        intent,
                        text: String::new(),
                    });
                    say(state, Level::Error, msg);
                    Vec::new()
                }
            }
            None => Vec::new(),
        },
    }
}

fn filter_key(state: &mut AppState, edit: Option<Edit>) -> Vec<Effect> {
    match edit {
        Some(Edit::Char(c)) if !c.is_control() => {
            push_limited(&mut state.filter, &c.to_string());
            refilter(state);
        }
        Some(Edit::Backspace) => {
            state.filter.pop();
            refilter(state);
        }
        Some(Edit::Enter) => state.filter_editing = false,
        Some(Edit::Esc) => {
            state.filter_editing = false;
            state.filter.clear();
            refilter(state);
        }
        _ => {}
    }
    Vec::new()
}
