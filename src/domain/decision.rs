//! Decisions: a reviewer's confirm or deny on one invocation input, bound to the argument hash,
//! and the pure planning of a decision against what is already decided.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::approval::{ApprovalId, ApprovalRequest};
use super::policy::{Policy, RiskTier};
use super::status::{InputState, Status};

/// Confirm runs the action; deny stops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Confirm,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirm => "confirm",
            Self::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confirm" => Some(Self::Confirm),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }
}

/// One recorded decision on one input. For a two-person rule each approver's confirm is a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub request: ApprovalId,
    pub input_index: usize,
    pub verdict: Verdict,
    pub reviewer: String,
    pub reason: Option<String>,
    pub decided_at: DateTime<Utc>,
    /// How long the reviewer had the request open before deciding; None from the headless CLI.
    pub dwell_ms: Option<u64>,
    /// The argument hash of the input the reviewer saw.
    pub args_hash: String,
}

/// What a reviewer asks for: one verdict on some inputs of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionAsk {
    pub request: ApprovalId,
    pub verdict: Verdict,
    /// Each input index with the argument hash the reviewer saw for it.
    pub inputs: Vec<(usize, String)>,
    pub reviewer: String,
    pub reason: Option<String>,
    pub dwell_ms: Option<u64>,
}

/// Why a decision was not taken. Every variant names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("request {request} input {} already decided ({verdict}) by {by} at {at}", .index + 1)]
    AlreadyDecided {
        request: ApprovalId,
        index: usize,
        verdict: &'static str,
        by: String,
        at: DateTime<Utc>,
    },
    #[error("request {request} is {status}; nothing leaves a final state")]
    Final { request: ApprovalId, status: Status },
    #[error("request {request} expired at {at}: the agent session is gone")]
    Expired {
        request: ApprovalId,
        at: DateTime<Utc>,
    },
    #[error(
        "request {request} input {}: the arguments differ from the ones you saw (hash {seen} is now {current})", .index + 1
    )]
    ArgumentsChanged {
        request: ApprovalId,
        index: usize,
        seen: String,
        current: String,
    },
    #[error("request {request} has no input {} (it has {count})", .index + 1)]
    NoSuchInput {
        request: ApprovalId,
        index: usize,
        count: usize,
    },
    #[error(
        "request {request} input {} is {tier}: it needs {needed} distinct approvers and {reviewer} has already approved it", .index + 1
    )]
    SameApprover {
        request: ApprovalId,
        index: usize,
        tier: RiskTier,
        needed: u8,
        reviewer: String,
    },
    #[error("a reason is required to {action} a {tier}-risk request")]
    ReasonRequired {
        action: &'static str,
        tier: RiskTier,
    },
    #[error("no inputs chosen")]
    NothingChosen,
}

impl Refusal {
    /// Why nothing more can be decided on `request` in final `status`: expired, or already
    /// decided by whoever decided last (named, with the time), or simply final.
    pub fn for_final<'a>(
        request: &ApprovalRequest,
        status: Status,
        decisions: impl Iterator<Item = &'a Decision>,
    ) -> Self {
        if status == Status::Expired {
            return Self::Expired {
                request: request.id.clone(),
                at: request.expires_at,
            };
        }
        match decisions.max_by_key(|d| d.decided_at) {
            Some(last) => Self::AlreadyDecided {
                request: request.id.clone(),
                index: last.input_index,
                verdict: last.verdict.as_str(),
                by: last.reviewer.clone(),
                at: last.decided_at,
            },
            None => Self::Final {
                request: request.id.clone(),
                status,
            },
        }
    }

    /// True for refusals that are the reviewer's input being wrong rather than a conflict.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::NoSuchInput { .. } | Self::NothingChosen | Self::ReasonRequired { .. }
        )
    }
}

/// The result of planning: the rows to write and the status they lead to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub decisions: Vec<Decision>,
    pub status_before: Status,
    pub status_after: Status,
}

/// Decides, purely, whether `ask` may be recorded on `request` given the decisions already
/// recorded, and what it leads to. Stores call this inside their conditional write.
pub fn plan(
    request: &ApprovalRequest,
    existing: &[Decision],
    policy: &Policy,
    ask: &DecisionAsk,
    now: DateTime<Utc>,
) -> Result<Plan, Refusal> {
    let before = Status::derive(request, existing, policy, now);
    if before.is_final() {
        return Err(Refusal::for_final(request, before, existing.iter()));
    }
    if ask.inputs.is_empty() {
        return Err(Refusal::NothingChosen);
    }
    let reason = ask
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let mut rows = Vec::with_capacity(ask.inputs.len());
    for (index, seen) in &ask.inputs {
        let index = *index;
        // An input named twice in one ask is one decision, not two rows.
        if rows.iter().any(|r: &Decision| r.input_index == index) {
            continue;
        }
        let Some(current) = request.input_hash(index) else {
            return Err(Refusal::NoSuchInput {
                request: request.id.clone(),
                index,
                count: request.inputs.len(),
            });
        };
        if *seen != current {
            return Err(Refusal::ArgumentsChanged {
                request: request.id.clone(),
                index,
                seen: seen.clone(),
                current,
            });
        }
        let tier = request.input_tier(index);
        let req = policy.requirements(tier);
        match ask.verdict {
            Verdict::Deny if reason.is_none() => {
                return Err(Refusal::ReasonRequired {
                    action: "reject",
                    tier,
                });
            }
            Verdict::Confirm if req.reason_required && reason.is_none() => {
                return Err(Refusal::ReasonRequired {
                    action: "approve",
                    tier,
                });
            }
            _ => {}
        }
        match InputState::derive(existing, index, req.approvers) {
            InputState::Confirmed { by, at } => {
                return Err(Refusal::AlreadyDecided {
                    request: request.id.clone(),
                    index,
                    verdict: "confirm",
                    by: by.join(" and "),
                    at,
                });
            }
            InputState::Denied { by, at } => {
                return Err(Refusal::AlreadyDecided {
                    request: request.id.clone(),
                    index,
                    verdict: "deny",
                    by,
                    at,
                });
            }
            InputState::Approving { approvers } if ask.verdict == Verdict::Confirm => {
                if approvers.contains(&ask.reviewer) {
                    return Err(Refusal::SameApprover {
                        request: request.id.clone(),
                        index,
                        tier,
                        needed: req.approvers,
                        reviewer: ask.reviewer.clone(),
                    });
                }
            }
            InputState::Pending | InputState::Approving { .. } => {}
        }
        rows.push(Decision {
            request: request.id.clone(),
            input_index: index,
            verdict: ask.verdict,
            reviewer: ask.reviewer.clone(),
            reason: reason.map(str::to_owned),
            decided_at: now,
            dwell_ms: ask.dwell_ms,
            args_hash: current,
        });
    }
    let mut all = existing.to_vec();
    all.extend(rows.iter().cloned());
    let after = Status::derive(request, &all, policy, now);
    before.check_transition(after).map_err(|_| Refusal::Final {
        request: request.id.clone(),
        status: before,
    })?;
    Ok(Plan {
        decisions: rows,
        status_before: before,
        status_after: after,
    })
}
