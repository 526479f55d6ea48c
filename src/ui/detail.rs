//! The request in full: every parameter wrapped, never cut; the rationale; session attributes
//! and their size; the argument hash; the policy rule; decisions so far. Scrolls by line.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::format::{countdown, status_role, status_symbol, tier_label, tier_role, timestamp};
use super::text::{display_width, wrap, wrap_segments};
use super::theme::{Role, Theme};
use crate::app::AppState;
use crate::app::state::Detail;
use crate::domain::approval::{ActionTarget, InvocationInput};
use crate::domain::decision::Verdict;
use crate::domain::sanitize::{self, Segment};
use crate::domain::status::{InputState, input_states};
use crate::store::StoredRequest;

/// Renders the detail and returns the largest useful scroll offset.
pub fn render(
    frame: &mut Frame<'_>,
    area: Rect,
    state: &AppState,
    d: &Detail,
    theme: &Theme,
) -> u16 {
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.style(Role::BorderFocused))
        .title(Span::styled(
            format!(" Request {} ", sanitize::line(d.id.as_str())),
            theme.style(Role::Title),
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width.max(1));
    let lines = match (&d.loaded, &d.load_error) {
        (_, Some(e)) => vec![Line::styled(
            format!("✗ could not load the request: {}", sanitize::line(e)),
            theme.style(Role::AlertError),
        )],
        (Some(stored), None) => lines(stored, d.selected_input, state, theme, width),
        (None, None) => vec![Line::styled("loading…", theme.style(Role::Muted))],
    };
    let height = usize::from(inner.height);
    let max_scroll = lines.len().saturating_sub(height);
    let scroll = usize::from(d.scroll).min(max_scroll);
    let visible: Vec<Line<'static>> = lines.into_iter().skip(scroll).take(height).collect();
    frame.render_widget(Paragraph::new(visible), inner);
    u16::try_from(max_scroll).unwrap_or(u16::MAX)
}

/// Builds every line of the detail at `width` columns.
pub fn lines(
    stored: &StoredRequest,
    selected: usize,
    state: &AppState,
    theme: &Theme,
    width: usize,
) -> Vec<Line<'static>> {
    let r = &stored.request;
    let mut out: Vec<Line<'static>> = Vec::new();
    let label = theme.style(Role::Muted);
    let text = theme.style(Role::Text);
    let tier = r.tier();
    let lead = r.lead_assessment();
    let left = countdown(r.expires_at, state.now);
    out.push(Line::from(vec![
        Span::styled(
            tier_label(tier, false).to_uppercase(),
            theme.style(tier_role(tier)),
        ),
        Span::raw("  "),
        Span::styled(
            lead.map_or_else(String::new, |a| a.reason.to_string()),
            text,
        ),
        Span::raw("  "),
        Span::styled(
            format!("{} {}", status_symbol(stored.status), stored.status),
            theme.style(status_role(stored.status)),
        ),
        Span::raw("  "),
        Span::styled(format!("{left} left"), theme.style(Role::AlertWarn)),
    ]));
    let field = |name: &str, value: String, out: &mut Vec<Line<'static>>| {
        wrapped(
            out,
            &format!("{name:<10}"),
            &value,
            width,
            label,
            text,
            theme.style(Role::Untrusted),
        );
    };
    field(
        "agent",
        format!(
            "{} / alias {}{}",
            r.agent_id,
            r.agent_alias_id,
            r.agent_version
                .as_ref()
                .map_or_else(String::new, |v| format!(" / version {v}"))
        ),
        &mut out,
    );
    field("session", r.session_id.clone(), &mut out);
    field("raised", timestamp(r.raised_at), &mut out);
    field(
        "expires",
        format!("{} (idle session TTL)", timestamp(r.expires_at)),
        &mut out,
    );
    let rule = match lead.and_then(|a| a.rule.as_ref()) {
        Some(name) => format!(
            "{name}: {}",
            lead.and_then(|a| a.rule_text.clone()).unwrap_or_default()
        ),
        None => "no rule matched; the policy's default tier applies".to_owned(),
    };
    field("rule", rule, &mut out);
    out.push(Line::default());
    out.push(Line::styled("Rationale", theme.style(Role::Title)));
    match &r.rationale {
        Some(t) => {
            block_text(&mut out, t, width, text, theme.style(Role::Untrusted));
            if !sanitize::is_clean(t) {
                let warn = theme.style(Role::AlertWarn);
                let why = "the rationale contains hidden or control characters (escape sequences, bidi, zero-width), shown as markers";
                wrapped(
                    &mut out,
                    "  ⚠ ",
                    why,
                    width,
                    warn,
                    warn,
                    theme.style(Role::Untrusted),
                );
            }
        }
        None => out.push(Line::styled(
            "  (the agent gave no rationale for this step)",
            label,
        )),
    }
    out.push(Line::default());
    out.push(inputs_strip(stored, selected, state, theme));
    if let Some(input) = r.inputs.get(selected) {
        input_lines(&mut out, stored, selected, input, state, theme, width);
    }
    out.push(Line::default());
    let size = r.session_attributes_size();
    out.push(Line::styled(
        format!(
            "Session attributes ({}, {size} bytes)",
            r.session_attributes.len()
        ),
        theme.style(Role::Title),
    ));
    if r.session_attributes.is_empty() {
        out.push(Line::styled("  (none)", label));
    }
    for (k, v) in &r.session_attributes {
        wrapped(
            &mut out,
            &format!("  {} = ", sanitize::line(k)),
            v,
            width,
            label,
            text,
            theme.style(Role::Untrusted),
        );
    }
    out
}

fn inputs_strip(
    stored: &StoredRequest,
    selected: usize,
    state: &AppState,
    theme: &Theme,
) -> Line<'static> {
    let r = &stored.request;
    let mut spans = vec![Span::styled(
        format!("Inputs ({}): ", r.inputs.len()),
        theme.style(Role::Title),
    )];
    let states = input_states(r, &stored.decisions, &state.policy);
    for (i, (input, input_state)) in r.inputs.iter().zip(&states).enumerate() {
        let (sym, role) = match input_state {
            InputState::Pending => ("○", Role::VerdictPending),
            InputState::Approving { .. } => ("◐", Role::VerdictPending),
            InputState::Confirmed { .. } => ("✓", Role::VerdictApproved),
            InputState::Denied { .. } => ("✗", Role::VerdictRejected),
        };
        let mut style = theme.style(role);
        if i == selected {
            style = style.patch(theme.style(Role::Selection));
        }
        spans.push(Span::styled(
            format!(
                "[{} {sym} {}]",
                i + 1,
                sanitize::line(&input.action_label())
            ),
            style,
        ));
        spans.push(Span::raw(" "));
    }
    Line::from(spans)
}

fn input_lines(
    out: &mut Vec<Line<'static>>,
    stored: &StoredRequest,
    index: usize,
    input: &InvocationInput,
    state: &AppState,
    theme: &Theme,
    width: usize,
) {
    let r = &stored.request;
    let label = theme.style(Role::Muted);
    let text = theme.style(Role::Text);
    out.push(Line::styled(
        format!("── Input {} of {} ", index + 1, r.inputs.len()),
        theme.style(Role::Accent),
    ));
    wrapped(
        out,
        "action    ",
        &input.action_label(),
        width,
        label,
        theme.style(Role::Accent),
        theme.style(Role::Untrusted),
    );
    wrapped(
        out,
        "type      ",
        input.invocation_type.as_wire(),
        width,
        label,
        text,
        theme.style(Role::Untrusted),
    );
    if let Some(a) = r.assessments.get(index) {
        let req = state.policy.requirements(a.tier);
        wrapped(
            out,
            "tier      ",
            &format!(
                "{} ({}); {} approver{}{}",
                a.tier,
                a.rule.as_deref().unwrap_or("default"),
                req.approvers,
                if req.approvers == 1 { "" } else { "s" },
                if req.reason_required {
                    ", reason required"
                } else {
                    ""
                }
            ),
            width,
            label,
            theme.style(tier_role_of(a.tier)),
            theme.style(Role::Untrusted),
        );
        for note in &a.notes {
            wrapped(
                out,
                "  ⚠ ",
                note,
                width,
                theme.style(Role::AlertWarn),
                theme.style(Role::AlertWarn),
                theme.style(Role::Untrusted),
            );
        }
    }
    if let Some(c) = &input.collaborator_name {
        wrapped(
            out,
            "collab.   ",
            c,
            width,
            label,
            text,
            theme.style(Role::Untrusted),
        );
    }
    if let Some(h) = r.input_hash(index) {
        wrapped(
            out,
            "hash      ",
            &format!("sha256:{h}"),
            width,
            label,
            label,
            theme.style(Role::Untrusted),
        );
    }
    let params = &input.parameters;
    out.push(Line::styled(
        format!("Parameters ({})", params.len()),
        theme.style(Role::Title),
    ));
    if params.is_empty() {
        out.push(Line::styled("  (none)", label));
    }
    for p in params {
        param_line(out, &p.name, &p.kind, &p.value, width, theme);
    }
    if let ActionTarget::Api {
        request_body: Some(_),
        ..
    } = &input.target
    {
        let props = input.body_properties();
        out.push(Line::styled(
            format!("Request body ({} properties)", props.len()),
            theme.style(Role::Title),
        ));
        for p in &props {
            param_line(out, &p.name, &p.kind, &p.value, width, theme);
        }
    }
    let decisions: Vec<_> = stored
        .decisions
        .iter()
        .filter(|d| d.input_index == index)
        .collect();
    if !decisions.is_empty() {
        out.push(Line::styled("Decisions", theme.style(Role::Title)));
        for d in decisions {
            let (sym, role) = match d.verdict {
                Verdict::Confirm => ("✓ approved", Role::VerdictApproved),
                Verdict::Deny => ("✗ rejected", Role::VerdictRejected),
            };
            let reason = d
                .reason
                .as_deref()
                .map_or_else(String::new, |r| format!(": {r}"));
            wrapped(
                out,
                &format!("  {sym} "),
                &format!("by {} at {}{reason}", d.reviewer, timestamp(d.decided_at)),
                width,
                theme.style(role),
                text,
                theme.style(Role::Untrusted),
            );
        }
    }
}

fn tier_role_of(t: crate::domain::policy::RiskTier) -> Role {
    tier_role(t)
}

fn param_line(
    out: &mut Vec<Line<'static>>,
    name: &str,
    kind: &str,
    value: &str,
    width: usize,
    theme: &Theme,
) {
    let head = format!("  {} ({}) = ", sanitize::line(name), sanitize::line(kind));
    wrapped(
        out,
        &head,
        value,
        width,
        theme.style(Role::Muted),
        theme.style(Role::Text),
        theme.style(Role::Untrusted),
    );
    let suspicious = sanitize::mixed_script_words(value);
    let warn = theme.style(Role::AlertWarn);
    if !suspicious.is_empty() {
        let words: Vec<String> = suspicious
            .iter()
            .map(|w| sanitize::line(w).into_owned())
            .collect();
        let why = format!(
            "mixes alphabets (look-alike characters): {}",
            words.join(", ")
        );
        wrapped(
            out,
            "    ⚠ ",
            &why,
            width,
            warn,
            warn,
            theme.style(Role::Untrusted),
        );
    }
    if !sanitize::is_clean(value) {
        let why = "contains hidden or control characters, shown as highlighted markers";
        wrapped(
            out,
            "    ⚠ ",
            why,
            width,
            warn,
            warn,
            theme.style(Role::Untrusted),
        );
    }
}

/// `head` then `value` sanitised and wrapped; continuation lines indent under the value. When the
/// head is too wide to leave room, it gets lines of its own and the value follows, indented: no
/// character of either is ever cut off.
fn wrapped(
    out: &mut Vec<Line<'static>>,
    head: &str,
    value: &str,
    width: usize,
    head_style: Style,
    style: Style,
    marker: Style,
) {
    let head_width = display_width(head);
    let segments = sanitize::segments(value, true);
    let spans = |line: Vec<Segment>| -> Vec<Span<'static>> {
        line.into_iter()
            .map(|seg| match seg {
                Segment::Text(t) => Span::styled(t, style),
                Segment::Marker(m) => Span::styled(m, marker),
            })
            .collect()
    };
    if head_width > width / 2 {
        for part in wrap(head, width) {
            out.push(Line::styled(part, head_style));
        }
        for line in wrap_segments(&segments, width.saturating_sub(4).max(1)) {
            let mut v = vec![Span::raw("    ")];
            v.extend(spans(line));
            out.push(Line::from(v));
        }
        return;
    }
    for (i, line) in wrap_segments(&segments, width - head_width)
        .into_iter()
        .enumerate()
    {
        let lead = if i == 0 {
            head.to_owned()
        } else {
            " ".repeat(head_width)
        };
        let mut v = vec![Span::styled(lead, head_style)];
        v.extend(spans(line));
        out.push(Line::from(v));
    }
}

fn block_text(
    out: &mut Vec<Line<'static>>,
    value: &str,
    width: usize,
    style: Style,
    marker: Style,
) {
    wrapped(out, "  ", value, width, style, style, marker);
}
