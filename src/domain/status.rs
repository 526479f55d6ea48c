//! Status of a request and of each of its inputs, derived purely from the decisions recorded and
//! the clock, with the one rule that matters: nothing leaves a final state.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::approval::ApprovalRequest;
use super::decision::{Decision, Verdict};
use super::policy::Policy;

/// Where one invocation input stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputState {
    Pending,
    /// Some, not enough, distinct reviewers have confirmed (two-person rule).
    Approving {
        approvers: Vec<String>,
    },
    Confirmed {
        by: Vec<String>,
        at: DateTime<Utc>,
    },
    Denied {
        by: String,
        at: DateTime<Utc>,
    },
}

impl InputState {
    /// Folds the decisions on input `index` in time order: a deny is final at once; confirms
    /// count distinct reviewers until `needed` of them have approved.
    pub fn derive(decisions: &[Decision], index: usize, needed: u8) -> Self {
        let mut mine: Vec<&Decision> = decisions
            .iter()
            .filter(|d| d.input_index == index)
            .collect();
        mine.sort_by_key(|d| d.decided_at);
        let mut approvers: Vec<String> = Vec::new();
        for d in mine {
            match d.verdict {
                Verdict::Deny => {
                    return Self::Denied {
                        by: d.reviewer.clone(),
                        at: d.decided_at,
                    };
                }
                Verdict::Confirm => {
                    if !approvers.contains(&d.reviewer) {
                        approvers.push(d.reviewer.clone());
                    }
                    if approvers.len() >= usize::from(needed.max(1)) {
                        return Self::Confirmed {
                            by: approvers,
                            at: d.decided_at,
                        };
                    }
                }
            }
        }
        if approvers.is_empty() {
            Self::Pending
        } else {
            Self::Approving { approvers }
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(self, Self::Confirmed { .. } | Self::Denied { .. })
    }
}

/// Where each input of `request` stands, given the decisions on it and each input's tier
/// requirements (how many distinct approvers it needs).
pub fn input_states(
    request: &ApprovalRequest,
    decisions: &[Decision],
    policy: &Policy,
) -> Vec<InputState> {
    (0..request.inputs.len())
        .map(|i| {
            InputState::derive(
                decisions,
                i,
                policy.requirements(request.input_tier(i)).approvers,
            )
        })
        .collect()
}

/// The indices of inputs not yet confirmed or denied.
pub fn open_inputs(
    request: &ApprovalRequest,
    decisions: &[Decision],
    policy: &Policy,
) -> Vec<usize> {
    input_states(request, decisions, policy)
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_final())
        .map(|(i, _)| i)
        .collect()
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Nothing decided yet.
    Pending,
    /// Some inputs decided, or awaiting a second approver; others still open.
    PartiallyDecided,
    /// Every input confirmed.
    Approved,
    /// Every input denied.
    Rejected,
    /// Every input decided, with differing verdicts.
    Mixed,
    /// The agent session expired before every input was decided.
    Expired,
}

impl Status {
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::PartiallyDecided,
        Self::Approved,
        Self::Rejected,
        Self::Mixed,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::PartiallyDecided => "partially-decided",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Mixed => "mixed",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Approved | Self::Rejected | Self::Mixed | Self::Expired
        )
    }

    /// Open requests are the ones the queue shows.
    pub fn is_open(self) -> bool {
        !self.is_final()
    }

    /// Whether moving from `self` to `to` is allowed: staying put always is; from an open
    /// state any state may follow; a final state never changes.
    pub fn check_transition(self, to: Self) -> Result<(), TransitionError> {
        if self == to || self.is_open() {
            Ok(())
        } else {
            Err(TransitionError { from: self, to })
        }
    }

    /// The status of `request` given every decision recorded on it and the time now.
    pub fn derive(
        request: &ApprovalRequest,
        decisions: &[Decision],
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Self {
        Self::from_inputs(
            &input_states(request, decisions, policy),
            now >= request.expires_at,
        )
    }

    /// The pure fold of input states into a request status.
    pub fn from_inputs(states: &[InputState], session_expired: bool) -> Self {
        let confirmed = states
            .iter()
            .filter(|s| matches!(s, InputState::Confirmed { .. }))
            .count();
        let denied = states
            .iter()
            .filter(|s| matches!(s, InputState::Denied { .. }))
            .count();
        let all_final = !states.is_empty() && confirmed + denied == states.len();
        if all_final {
            return if denied == 0 {
                Self::Approved
            } else if confirmed == 0 {
                Self::Rejected
            } else {
                Self::Mixed
            };
        }
        if session_expired {
            return Self::Expired;
        }
        let touched = states.iter().any(|s| !matches!(s, InputState::Pending));
        if touched {
            Self::PartiallyDecided
        } else {
            Self::Pending
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a request cannot go from {from} to {to}: {from} is final")]
pub struct TransitionError {
    pub from: Status,
    pub to: Status,
}
