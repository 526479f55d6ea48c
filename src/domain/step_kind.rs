//! What a reasoning step did, as a small bit set: the kinds of its events (model input and
//! output, rationale, the calls it made, guardrail, failure, final response, return of control).
//! The trace index keeps one per step, so filtering by kind never reads a step's body.

use super::trace::{InvocationDetail, ObservationDetail, StepEvent, TraceEvent, TraceKind};

/// A set of step kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct StepKinds(pub u16);

impl StepKinds {
    pub const MODEL_INPUT: Self = Self(1);
    pub const MODEL_OUTPUT: Self = Self(1 << 1);
    pub const RATIONALE: Self = Self(1 << 2);
    pub const ACTION_GROUP: Self = Self(1 << 3);
    pub const KNOWLEDGE_BASE: Self = Self(1 << 4);
    pub const CODE_INTERPRETER: Self = Self(1 << 5);
    pub const COLLABORATOR: Self = Self(1 << 6);
    pub const GUARDRAIL: Self = Self(1 << 7);
    pub const INTERVENED: Self = Self(1 << 8);
    pub const FAILURE: Self = Self(1 << 9);
    pub const FINAL: Self = Self(1 << 10);
    pub const RETURN_CONTROL: Self = Self(1 << 11);
    pub const REPROMPT: Self = Self(1 << 12);
    pub const CUSTOM: Self = Self(1 << 13);
    pub const UNKNOWN: Self = Self(1 << 14);

    /// Every kind with its filter name, in display order.
    pub const NAMED: [(Self, &'static str); 15] = [
        (Self::MODEL_INPUT, "model-input"),
        (Self::MODEL_OUTPUT, "model-output"),
        (Self::RATIONALE, "rationale"),
        (Self::ACTION_GROUP, "action-group"),
        (Self::KNOWLEDGE_BASE, "knowledge-base"),
        (Self::CODE_INTERPRETER, "code-interpreter"),
        (Self::COLLABORATOR, "collaborator"),
        (Self::GUARDRAIL, "guardrail"),
        (Self::INTERVENED, "intervened"),
        (Self::FAILURE, "failure"),
        (Self::FINAL, "final"),
        (Self::RETURN_CONTROL, "return-control"),
        (Self::REPROMPT, "reprompt"),
        (Self::CUSTOM, "custom"),
        (Self::UNKNOWN, "unknown"),
    ];

    pub fn contains(self, other: Self) -> bool {
        other.0 != 0 && self.0 & other.0 == other.0
    }

    #[must_use]
    pub fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The kind a filter names (`kb` and `action` are accepted for the long names).
    pub fn parse(name: &str) -> Option<Self> {
        let name = match name {
            "kb" => "knowledge-base",
            "action" | "tool" => "action-group",
            "code" => "code-interpreter",
            "roc" => "return-control",
            "guardrail-intervened" => "intervened",
            other => other,
        };
        Self::NAMED
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(k, _)| *k)
    }

    /// Short names for a column, in display order (`NAMED` order).
    pub const SHORT: [&'static str; 15] = [
        "prompt",
        "model",
        "rationale",
        "action",
        "kb",
        "code",
        "collab",
        "guardrail",
        "intervened",
        "FAILURE",
        "final",
        "roc",
        "reprompt",
        "custom",
        "unknown",
    ];

    /// The short names of the kinds in the set.
    pub fn short_names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMED
            .into_iter()
            .zip(Self::SHORT)
            .filter(move |((k, _), _)| self.contains(*k))
            .map(|(_, s)| s)
    }

    /// The names of the kinds in the set, in display order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMED
            .into_iter()
            .filter(move |(k, _)| self.contains(*k))
            .map(|(_, n)| n)
    }

    /// The kinds one event adds to its step.
    pub fn of_event(e: &TraceEvent) -> Self {
        match &e.kind {
            TraceKind::Guardrail(g) => {
                if g.action.as_deref() == Some("INTERVENED") {
                    Self::GUARDRAIL.with(Self::INTERVENED)
                } else {
                    Self::GUARDRAIL
                }
            }
            TraceKind::Failure { .. } => Self::FAILURE,
            TraceKind::CustomOrchestration { .. } => Self::CUSTOM,
            TraceKind::Unknown { .. } => Self::UNKNOWN,
            TraceKind::Step { event, .. } => match event {
                StepEvent::ModelInput(_) => Self::MODEL_INPUT,
                StepEvent::ModelOutput(m) => {
                    if m.parsed_rationale.is_some() {
                        Self::MODEL_OUTPUT.with(Self::RATIONALE)
                    } else {
                        Self::MODEL_OUTPUT
                    }
                }
                StepEvent::Rationale { .. } => Self::RATIONALE,
                StepEvent::Unknown { .. } => Self::UNKNOWN,
                StepEvent::InvocationInput(i) => match &i.detail {
                    InvocationDetail::ActionGroup { execution_type, .. } => {
                        if execution_type.as_deref() == Some("RETURN_CONTROL") {
                            Self::ACTION_GROUP.with(Self::RETURN_CONTROL)
                        } else {
                            Self::ACTION_GROUP
                        }
                    }
                    InvocationDetail::KnowledgeBase { .. } => Self::KNOWLEDGE_BASE,
                    InvocationDetail::CodeInterpreter { .. } => Self::CODE_INTERPRETER,
                    InvocationDetail::AgentCollaborator { .. } => Self::COLLABORATOR,
                    InvocationDetail::Finish => Self::FINAL,
                    InvocationDetail::Other => Self::default(),
                },
                StepEvent::Observation(o) => match &o.detail {
                    ObservationDetail::ActionGroup { .. } => Self::ACTION_GROUP,
                    ObservationDetail::KnowledgeBase { .. } => Self::KNOWLEDGE_BASE,
                    ObservationDetail::FinalResponse { .. } => Self::FINAL,
                    ObservationDetail::Reprompt { .. } => Self::REPROMPT,
                    ObservationDetail::CodeInterpreter { .. } => Self::CODE_INTERPRETER,
                    ObservationDetail::AgentCollaborator {
                        return_control_invocation_id,
                        ..
                    } => {
                        if return_control_invocation_id.is_some() {
                            Self::COLLABORATOR.with(Self::RETURN_CONTROL)
                        } else {
                            Self::COLLABORATOR
                        }
                    }
                    ObservationDetail::Bare => {
                        if o.observation_type.as_deref() == Some("ASK_USER") {
                            Self::RETURN_CONTROL
                        } else {
                            Self::default()
                        }
                    }
                },
            },
        }
    }

    /// The kinds read back from a step's comma-separated event kind names, for steps recorded
    /// before the store kept the set (coarser: calls are not told apart).
    pub fn from_kind_names(kinds: &str) -> Self {
        kinds.split(',').fold(Self::default(), |acc, k| {
            let tail = k.rsplit('/').next().unwrap_or(k);
            acc.with(match tail {
                "model-input" => Self::MODEL_INPUT,
                "model-output" => Self::MODEL_OUTPUT,
                "rationale" => Self::RATIONALE,
                "guardrail" => Self::GUARDRAIL,
                "failure" => Self::FAILURE,
                "custom-orchestration" => Self::CUSTOM,
                t if t.starts_with("unknown") => Self::UNKNOWN,
                _ => Self::default(),
            })
        })
    }
}

/// The readable parts of one event, each whole (never clipped): a label and its text. The
/// prompt, the raw model output, the rationale, a call's input, an observation (with every
/// knowledge-base reference and its location), guardrail findings, a failure. Untrusted text:
/// sanitise before display.
pub fn sections(e: &TraceEvent) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    let mut put = |label: &'static str, text: Option<&str>| {
        if let Some(t) = text.filter(|t| !t.is_empty()) {
            out.push((label, t.to_owned()));
        }
    };
    match &e.kind {
        TraceKind::Guardrail(g) => {
            put("guardrail action", g.action.as_deref());
            for a in &g.input_assessments {
                put("input finding", Some(a));
            }
            for a in &g.output_assessments {
                put("output finding", Some(a));
            }
        }
        TraceKind::Failure { reason, code, .. } => {
            put("failure", reason.as_deref());
            put("failure code", code.map(|c| c.to_string()).as_deref());
        }
        TraceKind::CustomOrchestration { text, .. } => put("custom orchestration", text.as_deref()),
        TraceKind::Unknown { key } => put("unknown trace", key.as_deref()),
        TraceKind::Step { event, .. } => match event {
            StepEvent::ModelInput(m) => {
                put("model", m.foundation_model.as_deref());
                put("prompt", m.text.as_deref());
            }
            StepEvent::ModelOutput(m) => {
                put("rationale", m.parsed_rationale.as_deref());
                put("parsed text", m.parsed_text.as_deref());
                if let Some(super::trace::Reasoning::Text { text, .. }) = &m.reasoning {
                    put("reasoning", Some(text));
                }
                put("raw model output", m.raw_content.as_deref());
            }
            StepEvent::Rationale { text, .. } => put("rationale", text.as_deref()),
            StepEvent::Unknown { key } => put("unknown step event", key.as_deref()),
            StepEvent::InvocationInput(i) => match &i.detail {
                InvocationDetail::ActionGroup {
                    action_group,
                    function,
                    api_path,
                    verb,
                    execution_type,
                    parameters,
                    ..
                } => {
                    let target = [action_group.as_deref(), function.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" / ");
                    put("action group call", Some(&target));
                    let api = [verb.as_deref(), api_path.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" ");
                    put("api", Some(&api));
                    put("execution", execution_type.as_deref());
                    for p in parameters {
                        put(
                            "parameter",
                            Some(&format!("{} ({}) = {}", p.name, p.kind, p.value)),
                        );
                    }
                }
                InvocationDetail::KnowledgeBase {
                    knowledge_base_id,
                    text,
                } => {
                    put("knowledge base", knowledge_base_id.as_deref());
                    put("query", text.as_deref());
                }
                InvocationDetail::CodeInterpreter { code, files } => {
                    put("code", code.as_deref());
                    for f in files {
                        put("file", Some(f));
                    }
                }
                InvocationDetail::AgentCollaborator { name, text, .. } => {
                    put("collaborator", name.as_deref());
                    put("collaborator input", text.as_deref());
                }
                InvocationDetail::Finish | InvocationDetail::Other => {
                    put("invocation", i.invocation_type.as_deref());
                }
            },
            StepEvent::Observation(o) => match &o.detail {
                ObservationDetail::ActionGroup { text, .. } => {
                    put("action group result", text.as_deref());
                }
                ObservationDetail::KnowledgeBase { references, .. } => {
                    for r in references {
                        let loc = [r.location_type.as_deref(), r.location.as_deref()]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(" ");
                        put("reference location", Some(&loc));
                        put("reference", r.content.as_deref());
                    }
                }
                ObservationDetail::FinalResponse { text, .. } => {
                    put("final response", text.as_deref());
                }
                ObservationDetail::Reprompt { text, source } => {
                    put("reprompt", text.as_deref());
                    put("reprompt source", source.as_deref());
                }
                ObservationDetail::CodeInterpreter {
                    output,
                    error,
                    files,
                    ..
                } => {
                    put("code output", output.as_deref());
                    put("code error", error.as_deref());
                    for f in files {
                        put("file", Some(f));
                    }
                }
                ObservationDetail::AgentCollaborator {
                    name,
                    text,
                    return_control_invocation_id,
                    ..
                } => {
                    put("collaborator", name.as_deref());
                    put("collaborator answer", text.as_deref());
                    put("returned control", return_control_invocation_id.as_deref());
                }
                ObservationDetail::Bare => put("observation", o.observation_type.as_deref()),
            },
        },
    }
    out
}
