//! Small formatting helpers shared by the panes: countdowns, tiers, ages.

use chrono::{DateTime, Utc};

use super::theme::Role;
use crate::domain::policy::{ControlReason, RiskTier};
use crate::domain::status::Status;

/// Time left as `m:ss`, `1h02m`, or `gone` once the session has expired.
pub fn countdown(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (expires_at - now).num_seconds();
    if secs <= 0 {
        return "gone".to_owned();
    }
    if secs < 3600 {
        format!("{}:{:02}", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// Whether the countdown should draw attention (under a minute).
pub fn urgent(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    (expires_at - now).num_seconds() < 60
}

pub fn tier_role(tier: RiskTier) -> Role {
    match tier {
        RiskTier::Low => Role::RiskLow,
        RiskTier::Medium => Role::RiskMedium,
        RiskTier::High => Role::RiskHigh,
        RiskTier::Critical => Role::RiskCritical,
    }
}

/// Symbol and word: tier never rests on colour alone.
pub fn tier_label(tier: RiskTier, short: bool) -> String {
    let word = if short {
        match tier {
            RiskTier::Low => "low",
            RiskTier::Medium => "med",
            RiskTier::High => "high",
            RiskTier::Critical => "crit",
        }
    } else {
        tier.word()
    };
    format!("{:<3} {word}", tier.symbol())
}

pub fn reason_label(reason: ControlReason, short: bool) -> &'static str {
    if !short {
        return reason.as_str();
    }
    match reason {
        ControlReason::ApprovalRequired => "approval",
        ControlReason::ComplianceCheck => "compliance",
        ControlReason::BudgetExceeded => "budget",
        ControlReason::HighRiskAction => "high-risk",
        ControlReason::HumanPreference => "preference",
    }
}

pub fn status_role(status: Status) -> Role {
    match status {
        Status::Pending | Status::PartiallyDecided => Role::VerdictPending,
        Status::Approved => Role::VerdictApproved,
        Status::Rejected => Role::VerdictRejected,
        Status::Mixed => Role::VerdictMixed,
        Status::Expired => Role::VerdictExpired,
    }
}

/// A symbol for a status, so it is not carried by colour alone.
pub fn status_symbol(status: Status) -> &'static str {
    match status {
        Status::Pending => "○",
        Status::PartiallyDecided => "◐",
        Status::Approved => "✓",
        Status::Rejected => "✗",
        Status::Mixed => "±",
        Status::Expired => "⧖",
    }
}

/// `2026-11-25 12:00:01Z`.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// A duration in ms as `850 ms`, `12.3 s`, `4m05s`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn countdowns() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let at = |s| now + chrono::Duration::seconds(s);
        assert_eq!(countdown(at(0), now), "gone");
        assert_eq!(countdown(at(-5), now), "gone");
        assert_eq!(countdown(at(59), now), "0:59");
        assert_eq!(countdown(at(600), now), "10:00");
        assert_eq!(countdown(at(3720), now), "1h02m");
    }
}
