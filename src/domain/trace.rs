//! agentdeck's own trace types: one `TraceEvent` per Bedrock `TracePart`, read leniently from the
//! part's wire JSON (`TraceEvent::from_wire`) so live streams, stored rows and imported recordings
//! all go through one reader. Also the step grouping key (traceId) and per-step figures.
//! Pure: no SDK types (the Bedrock adapter rebuilds the wire JSON from the SDK's accessors).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::approval::Parameter;

/// Timing and token usage of one model call, tool call, guardrail or whole invocation. Every
/// field is optional on the wire (older recordings carry only usage).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub total_time_ms: Option<i64>,
    pub operation_total_time_ms: Option<i64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub client_request_id: Option<String>,
}

impl Metadata {
    fn from_wire(v: Option<&Value>) -> Option<Self> {
        let m = v?.as_object()?;
        let usage = m.get("usage").and_then(Value::as_object);
        Some(Self {
            start: time(m.get("startTime")),
            end: time(m.get("endTime")),
            total_time_ms: m.get("totalTimeMs").and_then(Value::as_i64),
            operation_total_time_ms: m.get("operationTotalTimeMs").and_then(Value::as_i64),
            input_tokens: usage
                .and_then(|u| u.get("inputTokens"))
                .and_then(Value::as_i64),
            output_tokens: usage
                .and_then(|u| u.get("outputTokens"))
                .and_then(Value::as_i64),
            client_request_id: text(m, "clientRequestId"),
        })
    }

    /// Milliseconds this metadata accounts for: `totalTimeMs`, else end minus start.
    pub fn duration_ms(&self) -> Option<i64> {
        self.total_time_ms.or_else(|| match (self.start, self.end) {
            (Some(s), Some(e)) if e >= s => Some((e - s).num_milliseconds()),
            _ => None,
        })
    }
}

/// Which of Bedrock's reasoning phases a model/tool event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    PreProcessing,
    Orchestration,
    PostProcessing,
    RoutingClassifier,
}

impl Phase {
    pub const ALL: [Self; 4] = [
        Self::PreProcessing,
        Self::Orchestration,
        Self::PostProcessing,
        Self::RoutingClassifier,
    ];

    /// The key of this phase's trace on the wire.
    pub fn wire_key(self) -> &'static str {
        match self {
            Self::PreProcessing => "preProcessingTrace",
            Self::Orchestration => "orchestrationTrace",
            Self::PostProcessing => "postProcessingTrace",
            Self::RoutingClassifier => "routingClassifierTrace",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreProcessing => "pre-processing",
            Self::Orchestration => "orchestration",
            Self::PostProcessing => "post-processing",
            Self::RoutingClassifier => "routing-classifier",
        }
    }
}

/// `TraceEvent::kind_name` of each phase's step events, in `Phase` order: model input, model
/// output, rationale, invocation input, observation.
const STEP_KIND_NAMES: [[&str; 5]; 4] = [
    [
        "pre-processing/model-input",
        "pre-processing/model-output",
        "pre-processing/rationale",
        "pre-processing/invocation",
        "pre-processing/observation",
    ],
    [
        "orchestration/model-input",
        "orchestration/model-output",
        "orchestration/rationale",
        "orchestration/invocation",
        "orchestration/observation",
    ],
    [
        "post-processing/model-input",
        "post-processing/model-output",
        "post-processing/rationale",
        "post-processing/invocation",
        "post-processing/observation",
    ],
    [
        "routing-classifier/model-input",
        "routing-classifier/model-output",
        "routing-classifier/rationale",
        "routing-classifier/invocation",
        "routing-classifier/observation",
    ],
];

/// `modelInvocationInput`: the full prompt sent to the model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInput {
    pub trace_id: Option<String>,
    /// The whole prompt (often 2-10 KB).
    pub text: Option<String>,
    /// `type`: PRE_PROCESSING, ORCHESTRATION, ...
    pub prompt_type: Option<String>,
    pub foundation_model: Option<String>,
    pub prompt_creation_mode: Option<String>,
    pub parser_mode: Option<String>,
    pub override_lambda: Option<String>,
    // `inferenceConfiguration` (temperature, topP, ...) is read from the raw JSON, like the rest
    // of what nothing but the JSON view shows.
}

/// Reasoning content a model returned beside its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reasoning {
    Text {
        text: String,
        signature: Option<String>,
    },
    /// Encrypted by the provider: only its size is known.
    Redacted { bytes: usize },
}

/// `modelInvocationOutput`: what the model answered, with usage and timing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOutput {
    pub trace_id: Option<String>,
    /// `rawResponse.content`.
    pub raw_content: Option<String>,
    /// `parsedResponse.rationale` (pre-processing).
    pub parsed_rationale: Option<String>,
    /// `parsedResponse.isValid` (pre-processing).
    pub is_valid: Option<bool>,
    /// `parsedResponse.text` (post-processing).
    pub parsed_text: Option<String>,
    pub metadata: Option<Metadata>,
    pub reasoning: Option<Reasoning>,
}

/// What an `invocationInput` asked to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InvocationDetail {
    ActionGroup {
        action_group: Option<String>,
        function: Option<String>,
        api_path: Option<String>,
        verb: Option<String>,
        /// LAMBDA or RETURN_CONTROL.
        execution_type: Option<String>,
        invocation_id: Option<String>,
        parameters: Vec<Parameter>,
        /// `requestBody` as sent (`{"content": {"<media>": [params]}}`).
        request_body: Option<Value>,
    },
    KnowledgeBase {
        knowledge_base_id: Option<String>,
        text: Option<String>,
    },
    CodeInterpreter {
        code: Option<String>,
        files: Vec<String>,
    },
    AgentCollaborator {
        name: Option<String>,
        alias_arn: Option<String>,
        text: Option<String>,
        /// The supervisor handed return-of-control results to the collaborator.
        returns_control_results: bool,
    },
    Finish,
    /// No detail, or an invocation type this version does not know.
    Other,
}

/// `invocationInput`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invocation {
    pub trace_id: Option<String>,
    /// ACTION_GROUP, KNOWLEDGE_BASE, ACTION_GROUP_CODE_INTERPRETER, AGENT_COLLABORATOR, FINISH.
    pub invocation_type: Option<String>,
    pub detail: InvocationDetail,
}

/// One knowledge-base passage that was retrieved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub content: Option<String>,
    /// `location.type` (S3, WEB, CONFLUENCE, ...).
    pub location_type: Option<String>,
    /// The location's uri or url, whichever the type carries.
    pub location: Option<String>,
}

/// What an `observation` carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObservationDetail {
    ActionGroup {
        text: Option<String>,
        metadata: Option<Metadata>,
    },
    KnowledgeBase {
        references: Vec<Reference>,
        metadata: Option<Metadata>,
    },
    FinalResponse {
        text: Option<String>,
        metadata: Option<Metadata>,
    },
    Reprompt {
        text: Option<String>,
        source: Option<String>,
    },
    CodeInterpreter {
        output: Option<String>,
        error: Option<String>,
        files: Vec<String>,
        timed_out: Option<bool>,
        metadata: Option<Metadata>,
    },
    AgentCollaborator {
        name: Option<String>,
        alias_arn: Option<String>,
        text: Option<String>,
        /// The collaborator returned control (its invocationId), to be answered via the supervisor.
        return_control_invocation_id: Option<String>,
        metadata: Option<Metadata>,
    },
    /// No payload: ASK_USER, or a type this version does not know.
    Bare,
}

/// `observation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub trace_id: Option<String>,
    /// ACTION_GROUP, AGENT_COLLABORATOR, KNOWLEDGE_BASE, FINISH, ASK_USER, REPROMPT.
    pub observation_type: Option<String>,
    pub detail: ObservationDetail,
}

/// One member of a pre/orchestration/post/routing trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StepEvent {
    ModelInput(ModelInput),
    ModelOutput(ModelOutput),
    Rationale {
        trace_id: Option<String>,
        text: Option<String>,
    },
    InvocationInput(Invocation),
    Observation(Observation),
    /// A member this version does not know; its key on the wire.
    Unknown {
        key: Option<String>,
    },
}

/// `guardrailTrace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guardrail {
    pub trace_id: Option<String>,
    /// INTERVENED or NONE.
    pub action: Option<String>,
    /// One line per policy finding, e.g. `topic Politics DENY BLOCKED`.
    pub input_assessments: Vec<String>,
    pub output_assessments: Vec<String>,
    pub metadata: Option<Metadata>,
}

/// Which trace a part carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TraceKind {
    Guardrail(Guardrail),
    Step {
        phase: Phase,
        event: StepEvent,
    },
    Failure {
        trace_id: Option<String>,
        reason: Option<String>,
        code: Option<i64>,
        metadata: Option<Metadata>,
    },
    CustomOrchestration {
        trace_id: Option<String>,
        text: Option<String>,
    },
    /// A trace variant this version does not know (Bedrock adds them); its key on the wire.
    Unknown {
        key: Option<String>,
    },
}

/// One trace event, with the wire JSON it was read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    pub agent_id: Option<String>,
    pub agent_alias_id: Option<String>,
    pub agent_version: Option<String>,
    pub session_id: Option<String>,
    /// Nanosecond precision, as Bedrock sends it.
    pub event_time: Option<DateTime<Utc>>,
    pub collaborator_name: Option<String>,
    /// `callerChain[].agentAliasArn`, outermost first.
    pub caller_chain: Vec<String>,
    pub kind: TraceKind,
    /// The TracePart exactly as on the wire (keys as Bedrock names them).
    pub raw: RawJson,
}

/// An event's wire JSON: the parsed value, or only the compact text it was parsed from (a
/// recording or a stream read: the typed fields are taken from the value, which is then freed
/// at once, and a store writes the text as it came). The text is parsed again when the value is
/// asked for. Two are equal when their values are, whatever text they were read from.
#[derive(Debug, Clone)]
pub enum RawJson {
    Value(Value),
    /// One compact line of JSON that parses (`RawJson::of_text` checked both).
    Text(Box<str>),
}

impl Default for RawJson {
    fn default() -> Self {
        Self::Value(Value::Null)
    }
}

impl RawJson {
    /// `bytes` as the text of `value`, parsed from them, when they are one compact line of
    /// UTF-8; else the value itself (a pretty-printed record is stored compact, by serialising
    /// its value).
    pub fn of_text(value: Value, bytes: &[u8]) -> Self {
        if memchr::memchr(b'\n', bytes).is_some() {
            return Self::Value(value);
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Self::Text(Box::from(text)),
            Err(_) => Self::Value(value),
        }
    }

    /// The text it was read from, when kept.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t),
            Self::Value(_) => None,
        }
    }

    /// The value (parsed again from the text, which parsed when it was kept).
    pub fn value(&self) -> std::borrow::Cow<'_, Value> {
        match self {
            Self::Value(v) => std::borrow::Cow::Borrowed(v),
            Self::Text(t) => {
                std::borrow::Cow::Owned(serde_json::from_str(t).unwrap_or(Value::Null))
            }
        }
    }

    /// The value, parsed from the text if that is what is kept.
    pub fn into_value(self) -> Value {
        match self {
            Self::Value(v) => v,
            Self::Text(t) => serde_json::from_str(&t).unwrap_or(Value::Null),
        }
    }

    /// Compact JSON: the kept text, else the value serialised.
    pub fn to_json(&self) -> Result<std::borrow::Cow<'_, str>, serde_json::Error> {
        match self {
            Self::Text(t) => Ok(std::borrow::Cow::Borrowed(t)),
            Self::Value(v) => serde_json::to_string(v).map(std::borrow::Cow::Owned),
        }
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.value() == other.value()
    }
}

impl PartialEq<Value> for RawJson {
    fn eq(&self, other: &Value) -> bool {
        *self.value() == *other
    }
}

impl PartialEq<RawJson> for Value {
    fn eq(&self, other: &RawJson) -> bool {
        *self == *other.value()
    }
}

impl Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Self::Value)
    }
}

fn text(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    v.and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn params(v: Option<&Value>) -> Vec<Parameter> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_object)
                .map(|p| Parameter {
                    name: text(p, "name").unwrap_or_default(),
                    kind: text(p, "type").unwrap_or_default(),
                    value: text(p, "value").unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The single key of a union object (`{"rationale": {...}}`), with its value.
fn member(v: Option<&Value>) -> Option<(&str, &Value)> {
    let m = v?.as_object()?;
    m.iter().next().map(|(k, v)| (k.as_str(), v))
}

/// An empty object, for what is missing or not an object.
static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

/// The object `v` is, or an empty one: borrowed, so reading a large part copies nothing but the
/// fields it keeps.
fn obj(v: &Value) -> &Map<String, Value> {
    v.as_object().unwrap_or(&EMPTY)
}

/// The object under `key`, or an empty one.
fn field<'a>(m: &'a Map<String, Value>, key: &str) -> &'a Map<String, Value> {
    m.get(key).map_or(&EMPTY, obj)
}

fn assessments(v: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    let items = v.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let line = |parts: &[Option<String>]| {
        parts
            .iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    };
    for a in items {
        let a = obj(a);
        let list = |policy: &str, key: &str| -> Vec<&Map<String, Value>> {
            a.get(policy)
                .and_then(|p| p.get(key))
                .and_then(Value::as_array)
                .map(|l| l.iter().map(obj).collect())
                .unwrap_or_default()
        };
        for t in list("topicPolicy", "topics") {
            out.push(line(&[
                Some("topic".to_owned()),
                text(t, "name"),
                text(t, "type"),
                text(t, "action"),
            ]));
        }
        for f in list("contentPolicy", "filters") {
            out.push(line(&[
                Some("content".to_owned()),
                text(f, "type"),
                text(f, "confidence"),
                text(f, "action"),
            ]));
        }
        for w in list("wordPolicy", "customWords") {
            out.push(line(&[
                Some("word".to_owned()),
                text(w, "match"),
                text(w, "action"),
            ]));
        }
        for w in list("wordPolicy", "managedWordLists") {
            out.push(line(&[
                Some("managed-word".to_owned()),
                text(w, "type"),
                text(w, "match"),
                text(w, "action"),
            ]));
        }
        for p in list("sensitiveInformationPolicy", "piiEntities") {
            out.push(line(&[
                Some("pii".to_owned()),
                text(p, "type"),
                text(p, "match"),
                text(p, "action"),
            ]));
        }
        for r in list("sensitiveInformationPolicy", "regexes") {
            out.push(line(&[
                Some("regex".to_owned()),
                text(r, "name"),
                text(r, "match"),
                text(r, "action"),
            ]));
        }
    }
    out
}

fn model_input(m: &Map<String, Value>) -> ModelInput {
    ModelInput {
        trace_id: text(m, "traceId"),
        text: text(m, "text"),
        prompt_type: text(m, "type"),
        foundation_model: text(m, "foundationModel"),
        prompt_creation_mode: text(m, "promptCreationMode"),
        parser_mode: text(m, "parserMode"),
        override_lambda: text(m, "overrideLambda"),
    }
}

fn model_output(m: &Map<String, Value>) -> ModelOutput {
    let parsed = field(m, "parsedResponse");
    let reasoning = member(m.get("reasoningContent")).and_then(|(k, v)| match k {
        "reasoningText" => Some(Reasoning::Text {
            text: v
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            signature: v
                .get("signature")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }),
        "redactedContent" => Some(Reasoning::Redacted {
            bytes: v.as_str().map_or(0, |s| s.len() / 4 * 3),
        }),
        _ => None,
    });
    ModelOutput {
        trace_id: text(m, "traceId"),
        raw_content: m
            .get("rawResponse")
            .and_then(|r| r.get("content"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        parsed_rationale: text(parsed, "rationale"),
        is_valid: parsed.get("isValid").and_then(Value::as_bool),
        parsed_text: text(parsed, "text"),
        metadata: Metadata::from_wire(m.get("metadata")),
        reasoning,
    }
}

fn invocation(m: &Map<String, Value>) -> Invocation {
    let sub = |k: &str| m.get(k).map(obj);
    let detail = if let Some(a) = sub("actionGroupInvocationInput") {
        InvocationDetail::ActionGroup {
            action_group: text(a, "actionGroupName"),
            function: text(a, "function"),
            api_path: text(a, "apiPath"),
            verb: text(a, "verb"),
            execution_type: text(a, "executionType"),
            invocation_id: text(a, "invocationId"),
            parameters: params(a.get("parameters")),
            request_body: a.get("requestBody").cloned(),
        }
    } else if let Some(k) = sub("knowledgeBaseLookupInput") {
        InvocationDetail::KnowledgeBase {
            knowledge_base_id: text(k, "knowledgeBaseId"),
            text: text(k, "text"),
        }
    } else if let Some(c) = sub("codeInterpreterInvocationInput") {
        InvocationDetail::CodeInterpreter {
            code: text(c, "code"),
            files: strings(c.get("files")),
        }
    } else if let Some(c) = sub("agentCollaboratorInvocationInput") {
        let input = field(c, "input");
        InvocationDetail::AgentCollaborator {
            name: text(c, "agentCollaboratorName"),
            alias_arn: text(c, "agentCollaboratorAliasArn"),
            text: text(input, "text"),
            returns_control_results: input.contains_key("returnControlResults"),
        }
    } else if m.get("invocationType").and_then(Value::as_str) == Some("FINISH") {
        InvocationDetail::Finish
    } else {
        InvocationDetail::Other
    };
    Invocation {
        trace_id: text(m, "traceId"),
        invocation_type: text(m, "invocationType"),
        detail,
    }
}

fn reference(v: &Value) -> Reference {
    let r = obj(v);
    let location = field(r, "location");
    // Each location type nests its address in its own object: `s3Location.uri`,
    // `webLocation.url`, `confluenceLocation.url`, ...
    let address = location.iter().find_map(|(k, v)| {
        if k == "type" {
            return None;
        }
        let o = v.as_object()?;
        ["uri", "url", "id", "query"]
            .iter()
            .find_map(|a| o.get(*a).and_then(Value::as_str))
            .map(str::to_owned)
    });
    Reference {
        content: r
            .get("content")
            .and_then(|c| c.get("text"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        location_type: text(location, "type"),
        location: address,
    }
}

fn observation(m: &Map<String, Value>) -> Observation {
    let sub = |k: &str| m.get(k).map(obj);
    let meta = |o: &Map<String, Value>| Metadata::from_wire(o.get("metadata"));
    let detail = if let Some(a) = sub("actionGroupInvocationOutput") {
        ObservationDetail::ActionGroup {
            text: text(a, "text"),
            metadata: meta(a),
        }
    } else if let Some(k) = sub("knowledgeBaseLookupOutput") {
        ObservationDetail::KnowledgeBase {
            references: k
                .get("retrievedReferences")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(reference).collect())
                .unwrap_or_default(),
            metadata: meta(k),
        }
    } else if let Some(f) = sub("finalResponse") {
        ObservationDetail::FinalResponse {
            text: text(f, "text"),
            metadata: meta(f),
        }
    } else if let Some(r) = sub("repromptResponse") {
        ObservationDetail::Reprompt {
            text: text(r, "text"),
            source: text(r, "source"),
        }
    } else if let Some(c) = sub("codeInterpreterInvocationOutput") {
        ObservationDetail::CodeInterpreter {
            output: text(c, "executionOutput"),
            error: text(c, "executionError"),
            files: strings(c.get("files")),
            timed_out: c.get("executionTimeout").and_then(Value::as_bool),
            metadata: meta(c),
        }
    } else if let Some(c) = sub("agentCollaboratorInvocationOutput") {
        let output = field(c, "output");
        ObservationDetail::AgentCollaborator {
            name: text(c, "agentCollaboratorName"),
            alias_arn: text(c, "agentCollaboratorAliasArn"),
            text: text(output, "text"),
            return_control_invocation_id: output
                .get("returnControlPayload")
                .and_then(|p| p.get("invocationId"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            metadata: meta(c),
        }
    } else {
        ObservationDetail::Bare
    };
    Observation {
        trace_id: text(m, "traceId"),
        observation_type: text(m, "type"),
        detail,
    }
}

fn step_event(v: Option<&Value>) -> StepEvent {
    let Some((key, inner)) = member(v) else {
        return StepEvent::Unknown { key: None };
    };
    let m = obj(inner);
    match key {
        "modelInvocationInput" => StepEvent::ModelInput(model_input(m)),
        "modelInvocationOutput" => StepEvent::ModelOutput(model_output(m)),
        "rationale" => StepEvent::Rationale {
            trace_id: text(m, "traceId"),
            text: text(m, "text"),
        },
        "invocationInput" => StepEvent::InvocationInput(invocation(m)),
        "observation" => StepEvent::Observation(observation(m)),
        other => StepEvent::Unknown {
            key: Some(other.to_owned()),
        },
    }
}

impl TraceKind {
    fn from_wire(v: Option<&Value>) -> Self {
        let Some((key, inner)) = member(v) else {
            return Self::Unknown { key: None };
        };
        if let Some(phase) = Phase::ALL.into_iter().find(|p| p.wire_key() == key) {
            return Self::Step {
                phase,
                event: step_event(Some(inner)),
            };
        }
        let m = obj(inner);
        match key {
            "guardrailTrace" => Self::Guardrail(Guardrail {
                trace_id: text(m, "traceId"),
                action: text(m, "action"),
                input_assessments: assessments(m.get("inputAssessments")),
                output_assessments: assessments(m.get("outputAssessments")),
                metadata: Metadata::from_wire(m.get("metadata")),
            }),
            "failureTrace" => Self::Failure {
                trace_id: text(m, "traceId"),
                reason: text(m, "failureReason"),
                code: m.get("failureCode").and_then(Value::as_i64),
                metadata: Metadata::from_wire(m.get("metadata")),
            },
            "customOrchestrationTrace" => Self::CustomOrchestration {
                trace_id: text(m, "traceId"),
                text: m
                    .get("event")
                    .and_then(|e| e.get("text"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            },
            other => Self::Unknown {
                key: Some(other.to_owned()),
            },
        }
    }
}

impl TraceEvent {
    /// Reads a TracePart's wire JSON. Never fails: what is missing is `None`, what is unknown is
    /// `Unknown`, and the JSON is kept as `raw` whatever it held.
    pub fn from_wire(raw: Value) -> Self {
        let mut e = Self::read(&raw);
        e.raw = RawJson::Value(raw);
        e
    }

    /// `from_wire`, keeping only the JSON text `raw` was parsed from when it can (see
    /// `RawJson::of_text`): the value is freed here, where it was made.
    pub fn from_wire_text(raw: Value, text: &[u8]) -> Self {
        let mut e = Self::read(&raw);
        e.raw = RawJson::of_text(raw, text);
        e
    }

    /// The typed fields of a TracePart (`raw` left empty).
    fn read(raw: &Value) -> Self {
        let m = obj(raw);
        let caller_chain = m
            .get("callerChain")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.get("agentAliasArn").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Self {
            agent_id: text(m, "agentId"),
            agent_alias_id: text(m, "agentAliasId"),
            agent_version: text(m, "agentVersion"),
            session_id: text(m, "sessionId"),
            event_time: time(m.get("eventTime")),
            collaborator_name: text(m, "collaboratorName"),
            caller_chain,
            kind: TraceKind::from_wire(m.get("trace")),
            raw: RawJson::default(),
        }
    }

    /// The traceId, wherever this variant keeps it.
    pub fn trace_id(&self) -> Option<&str> {
        let id = match &self.kind {
            TraceKind::Guardrail(g) => &g.trace_id,
            TraceKind::Failure { trace_id, .. }
            | TraceKind::CustomOrchestration { trace_id, .. } => trace_id,
            TraceKind::Step { event, .. } => match event {
                StepEvent::ModelInput(m) => &m.trace_id,
                StepEvent::ModelOutput(m) => &m.trace_id,
                StepEvent::Rationale { trace_id, .. } => trace_id,
                StepEvent::InvocationInput(i) => &i.trace_id,
                StepEvent::Observation(o) => &o.trace_id,
                StepEvent::Unknown { .. } => return None,
            },
            TraceKind::Unknown { .. } => return None,
        };
        id.as_deref()
    }

    /// The key events are grouped into reasoning steps by: the traceId, or `""` when the event
    /// has none (unknown variants), which groups such events together.
    pub fn step_key(&self) -> &str {
        self.trace_id().unwrap_or("")
    }

    /// The metadata (timing, usage) this event carries, if any.
    pub fn metadata(&self) -> Option<&Metadata> {
        match &self.kind {
            TraceKind::Guardrail(g) => g.metadata.as_ref(),
            TraceKind::Failure { metadata, .. } => metadata.as_ref(),
            TraceKind::Step { event, .. } => match event {
                StepEvent::ModelOutput(m) => m.metadata.as_ref(),
                StepEvent::Observation(o) => match &o.detail {
                    ObservationDetail::ActionGroup { metadata, .. }
                    | ObservationDetail::KnowledgeBase { metadata, .. }
                    | ObservationDetail::FinalResponse { metadata, .. }
                    | ObservationDetail::CodeInterpreter { metadata, .. }
                    | ObservationDetail::AgentCollaborator { metadata, .. } => metadata.as_ref(),
                    ObservationDetail::Reprompt { .. } | ObservationDetail::Bare => None,
                },
                _ => None,
            },
            TraceKind::CustomOrchestration { .. } | TraceKind::Unknown { .. } => None,
        }
    }

    /// The rationale text, when this event is a rationale (or a pre-processing parsed one).
    pub fn rationale(&self) -> Option<&str> {
        match &self.kind {
            TraceKind::Step {
                event: StepEvent::Rationale { text, .. },
                ..
            } => text.as_deref(),
            TraceKind::Step {
                event: StepEvent::ModelOutput(m),
                ..
            } => m.parsed_rationale.as_deref(),
            _ => None,
        }
    }

    /// The final response, when this event is the FINISH observation.
    pub fn final_response(&self) -> Option<(&str, Option<&Metadata>)> {
        match &self.kind {
            TraceKind::Step {
                event:
                    StepEvent::Observation(Observation {
                        detail: ObservationDetail::FinalResponse { text, metadata },
                        ..
                    }),
                ..
            } => Some((text.as_deref().unwrap_or_default(), metadata.as_ref())),
            _ => None,
        }
    }

    /// A short name of the event's kind: `orchestration/model-output`, `guardrail`, ... Every
    /// known kind is a static name (the store writes one per event); only a kind this version
    /// does not know is built.
    pub fn kind_name(&self) -> Cow<'static, str> {
        let unknown = |key: &Option<String>| format!("unknown({})", key.as_deref().unwrap_or("-"));
        match &self.kind {
            TraceKind::Guardrail(_) => Cow::Borrowed("guardrail"),
            TraceKind::Failure { .. } => Cow::Borrowed("failure"),
            TraceKind::CustomOrchestration { .. } => Cow::Borrowed("custom-orchestration"),
            TraceKind::Unknown { key } => Cow::Owned(unknown(key)),
            TraceKind::Step { phase, event } => {
                let at = match event {
                    StepEvent::ModelInput(_) => 0,
                    StepEvent::ModelOutput(_) => 1,
                    StepEvent::Rationale { .. } => 2,
                    StepEvent::InvocationInput(_) => 3,
                    StepEvent::Observation(_) => 4,
                    StepEvent::Unknown { key } => {
                        return Cow::Owned(format!("{}/{}", phase.as_str(), unknown(key)));
                    }
                };
                Cow::Borrowed(STEP_KIND_NAMES[*phase as usize][at])
            }
        }
    }

    /// One line saying what happened (untrusted text: sanitise before display).
    pub fn summary(&self) -> String {
        let clip = |s: &str| clip(s, 120);
        match &self.kind {
            TraceKind::Guardrail(g) => {
                let findings = g.input_assessments.len() + g.output_assessments.len();
                format!(
                    "{} ({findings} finding{})",
                    g.action.as_deref().unwrap_or("?"),
                    if findings == 1 { "" } else { "s" }
                )
            }
            TraceKind::Failure { reason, code, .. } => format!(
                "{}{}",
                code.map(|c| format!("[{c}] ")).unwrap_or_default(),
                clip(reason.as_deref().unwrap_or_default())
            ),
            TraceKind::CustomOrchestration { text, .. } => {
                clip(text.as_deref().unwrap_or_default())
            }
            TraceKind::Unknown { .. } => String::new(),
            TraceKind::Step { event, .. } => match event {
                StepEvent::ModelInput(m) => format!(
                    "{} {} ({} chars)",
                    m.prompt_type.as_deref().unwrap_or("?"),
                    m.foundation_model.as_deref().unwrap_or(""),
                    m.text.as_deref().map_or(0, |t| t.chars().count())
                ),
                StepEvent::ModelOutput(m) => clip(m.raw_content.as_deref().unwrap_or_default()),
                StepEvent::Rationale { text, .. } => clip(text.as_deref().unwrap_or_default()),
                StepEvent::InvocationInput(i) => match &i.detail {
                    InvocationDetail::ActionGroup {
                        action_group,
                        function,
                        api_path,
                        verb,
                        execution_type,
                        ..
                    } => format!(
                        "{} {}{}{}",
                        action_group.as_deref().unwrap_or("?"),
                        verb.as_deref().map(|v| format!("{v} ")).unwrap_or_default(),
                        function.as_deref().or(api_path.as_deref()).unwrap_or("?"),
                        execution_type
                            .as_deref()
                            .map(|e| format!(" [{e}]"))
                            .unwrap_or_default()
                    ),
                    InvocationDetail::KnowledgeBase {
                        knowledge_base_id,
                        text,
                    } => format!(
                        "kb {}: {}",
                        knowledge_base_id.as_deref().unwrap_or("?"),
                        clip(text.as_deref().unwrap_or_default())
                    ),
                    InvocationDetail::CodeInterpreter { code, .. } => {
                        format!("code: {}", clip(code.as_deref().unwrap_or_default()))
                    }
                    InvocationDetail::AgentCollaborator { name, text, .. } => format!(
                        "-> {}: {}",
                        name.as_deref().unwrap_or("?"),
                        clip(text.as_deref().unwrap_or_default())
                    ),
                    InvocationDetail::Finish => "FINISH".to_owned(),
                    InvocationDetail::Other => i.invocation_type.clone().unwrap_or_default(),
                },
                StepEvent::Observation(o) => {
                    let ty = o.observation_type.as_deref().unwrap_or("?");
                    let body = match &o.detail {
                        ObservationDetail::ActionGroup { text, .. }
                        | ObservationDetail::FinalResponse { text, .. }
                        | ObservationDetail::Reprompt { text, .. }
                        | ObservationDetail::AgentCollaborator { text, .. } => {
                            clip(text.as_deref().unwrap_or_default())
                        }
                        ObservationDetail::KnowledgeBase { references, .. } => {
                            format!("{} reference(s)", references.len())
                        }
                        ObservationDetail::CodeInterpreter { output, error, .. } => {
                            clip(error.as_deref().or(output.as_deref()).unwrap_or_default())
                        }
                        ObservationDetail::Bare => String::new(),
                    };
                    format!("{ty} {body}").trim_end().to_owned()
                }
                StepEvent::Unknown { .. } => String::new(),
            },
        }
    }
}

/// The first `max` characters of `s`, with `…` when cut.
fn clip(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// Duration and tokens of one reasoning step (the events sharing a traceId).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFigures {
    /// From the metadata's start/end span, else the sum of its `totalTimeMs`, else the span of
    /// the events' times; None when none of them is there.
    pub duration_ms: Option<i64>,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

impl StepFigures {
    pub fn of<'a>(events: impl IntoIterator<Item = &'a TraceEvent>) -> Self {
        let mut acc = StepAccumulator::default();
        for e in events {
            acc.add(e);
        }
        acc.figures()
    }
}

/// The running sums a step's figures come from, so a store can keep them per step and update
/// them event by event. Times are nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepAccumulator {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub meta_start_ns: Option<i64>,
    pub meta_end_ns: Option<i64>,
    pub total_time_ms: Option<i64>,
    pub first_time_ns: Option<i64>,
    pub last_time_ns: Option<i64>,
}

fn nanos(t: DateTime<Utc>) -> Option<i64> {
    t.timestamp_nanos_opt()
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl StepAccumulator {
    pub fn add(&mut self, e: &TraceEvent) {
        if let Some(t) = e.event_time.and_then(nanos) {
            self.first_time_ns = min_opt(self.first_time_ns, Some(t));
            self.last_time_ns = max_opt(self.last_time_ns, Some(t));
        }
        let Some(m) = e.metadata() else { return };
        self.input_tokens += m.input_tokens.unwrap_or(0);
        self.output_tokens += m.output_tokens.unwrap_or(0);
        if let (Some(s), Some(en)) = (m.start.and_then(nanos), m.end.and_then(nanos)) {
            self.meta_start_ns = min_opt(self.meta_start_ns, Some(s));
            self.meta_end_ns = max_opt(self.meta_end_ns, Some(en));
        }
        // A final response's operationTotalTimeMs is the whole invocation's, not this step's.
        if let Some(t) = m.total_time_ms {
            self.total_time_ms = Some(self.total_time_ms.unwrap_or(0) + t);
        }
    }

    pub fn figures(&self) -> StepFigures {
        let span = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (Some(a), Some(b)) if b >= a => Some((b - a) / 1_000_000),
            _ => None,
        };
        StepFigures {
            duration_ms: span(self.meta_start_ns, self.meta_end_ns)
                .or(self.total_time_ms)
                .or_else(|| span(self.first_time_ns, self.last_time_ns)),
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
        }
    }
}
