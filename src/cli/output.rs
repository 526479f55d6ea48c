//! Text renderings of requests for the terminal. Every value from an agent, model or user passes
//! through the sanitiser; nothing is cut.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::domain::approval::ActionTarget;
use crate::domain::sanitize;
use crate::store::{QueueRow, StoredRequest};
use crate::ui::format::{countdown, timestamp};

pub fn queue_table(rows: &[QueueRow], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("no open requests\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<14} {:>7}  {:<21} {:<36}  ACTION  PARAMETERS",
        "TIER", "LEFT", "AGENT/ALIAS", "ID"
    );
    for r in rows {
        let params: Vec<String> = r
            .key_params
            .iter()
            .map(|(n, v)| {
                let v = sanitize::line(v);
                if v.is_empty() || v.contains(char::is_whitespace) {
                    format!("{}={v:?}", sanitize::line(n))
                } else {
                    format!("{}={v}", sanitize::line(n))
                }
            })
            .collect();
        let more = if r.inputs > 1 {
            format!(" (+{} more inputs)", r.inputs - 1)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:<14} {:>7}  {:<21} {:<36}  {}{more}  {}  [{}{}]",
            format!("{} {}", r.tier.symbol(), r.tier),
            countdown(r.expires_at, now),
            format!(
                "{}/{}",
                sanitize::line(&r.agent_id),
                sanitize::line(&r.agent_alias_id)
            ),
            sanitize::line(r.id.as_str()),
            sanitize::line(&r.action),
            params.join(" "),
            r.reason,
            r.rule
                .as_deref()
                .map_or_else(String::new, |x| format!(", rule {}", sanitize::line(x))),
        );
    }
    out
}

pub fn request_text(s: &StoredRequest, now: DateTime<Utc>) -> String {
    let r = &s.request;
    let mut o = String::new();
    let line = |o: &mut String, k: &str, v: &str| {
        let _ = writeln!(o, "{k:<18} {}", sanitize::block(v));
    };
    line(&mut o, "request", r.id.as_str());
    line(&mut o, "status", s.status.as_str());
    line(
        &mut o,
        "tier",
        &format!("{} {}", r.tier().symbol(), r.tier()),
    );
    line(
        &mut o,
        "agent",
        &format!(
            "{} / alias {} / version {}",
            r.agent_id,
            r.agent_alias_id,
            r.agent_version.as_deref().unwrap_or("-")
        ),
    );
    line(&mut o, "session", &r.session_id);
    line(&mut o, "raised", &timestamp(r.raised_at));
    line(
        &mut o,
        "expires",
        &format!(
            "{} ({} left)",
            timestamp(r.expires_at),
            countdown(r.expires_at, now)
        ),
    );
    line(
        &mut o,
        "rationale",
        r.rationale.as_deref().unwrap_or("(none given)"),
    );
    for (i, input) in r.inputs.iter().enumerate() {
        let _ = writeln!(o, "\ninput {} of {}", i + 1, r.inputs.len());
        line(&mut o, "  action", &input.action_label());
        line(&mut o, "  type", input.invocation_type.as_wire());
        if let Some(a) = r.assessments.get(i) {
            let rule = a.rule.as_deref().map_or_else(
                || "default".to_owned(),
                |n| format!("{n}: {}", a.rule_text.as_deref().unwrap_or("")),
            );
            line(
                &mut o,
                "  tier",
                &format!("{} ({}, {rule})", a.tier, a.reason),
            );
            for n in &a.notes {
                line(&mut o, "  note", n);
            }
        }
        if let Some(h) = r.input_hash(i) {
            line(&mut o, "  hash", &h);
        }
        for p in &input.parameters {
            line(
                &mut o,
                &format!(
                    "  {} ({})",
                    sanitize::line(&p.name),
                    sanitize::line(&p.kind)
                ),
                &p.value,
            );
        }
        if let ActionTarget::Api {
            request_body: Some(_),
            ..
        } = &input.target
        {
            for p in input.body_properties() {
                line(
                    &mut o,
                    &format!(
                        "  body.{} ({})",
                        sanitize::line(&p.name),
                        sanitize::line(&p.kind)
                    ),
                    &p.value,
                );
            }
        }
        for d in s.decisions.iter().filter(|d| d.input_index == i) {
            line(
                &mut o,
                "  decision",
                &format!(
                    "{} by {} at {}{}",
                    d.verdict.as_str(),
                    d.reviewer,
                    timestamp(d.decided_at),
                    d.reason
                        .as_deref()
                        .map_or_else(String::new, |r| format!(": {r}"))
                ),
            );
        }
    }
    let _ = writeln!(
        o,
        "\nsession attributes ({}, {} bytes)",
        r.session_attributes.len(),
        r.session_attributes_size()
    );
    for (k, v) in &r.session_attributes {
        line(&mut o, &format!("  {}", sanitize::line(k)), v);
    }
    o
}
