//! A stream's `TracePart` straight into the domain's `TraceEvent`, through the SDK's accessors:
//! the typed fields are read from the SDK structs, and the raw JSON is written as text from
//! them, with no `serde_json::Value` in between (building, reading, serialising and dropping
//! that tree was most of the runner's CPU per event). It is the same JSON as `wire::trace_part`
//! serialised (keys sorted, absent fields and empty lists left out), and the same event as
//! `TraceEvent::from_wire` reads from it: tests/suite/trace_mapping.rs checks both, byte for
//! byte, for every variant.
//!
//! The part is taken by value. Once a string is written into the JSON, the common members'
//! strings (a model call's prompt and raw response, rationales, observations, ids) are moved
//! out of the SDK's public fields rather than copied: on `cargo bench --bench mapping`, 1,309
//! -> 1,136 ns per part.

use aws_sdk_bedrockagentruntime::types as sdk;
use aws_smithy_types::DateTime as SmithyTime;
use base64::Engine;
use chrono::{DateTime, Utc};

use crate::domain::approval::Parameter;
use crate::domain::json_text::JsonText as Out;
use crate::domain::trace::{
    Guardrail, Invocation, InvocationDetail, Metadata, ModelInput, ModelOutput, Observation,
    ObservationDetail, Phase, RawJson, Reasoning, Reference, StepEvent, TraceEvent, TraceKind,
};

/// Times written into the JSON text, as Bedrock sent them (`wire::write_time`).
trait WriteTime {
    fn time(&mut self, k: &str, v: Option<&SmithyTime>) -> &mut Self;
}

impl WriteTime for Out {
    fn time(&mut self, k: &str, v: Option<&SmithyTime>) -> &mut Self {
        if let Some(t) = v {
            self.key(k);
            // Its characters (digits, `-:.TZ`, or Smithy's own form) need no escaping.
            let buf = self.buf_mut();
            buf.push('"');
            if crate::bedrock::wire::write_time(buf, t) {
                buf.push('"');
            } else {
                buf.pop();
                buf.push_str("null");
            }
        }
        self
    }
}

fn w_assessment(o: &mut Out, a: &sdk::GuardrailAssessment) {
    o.obj("contentPolicy", a.content_policy(), |o, p| {
        o.list("filters", p.filters(), |o, f| {
            o.s(
                "action",
                f.action().map(sdk::GuardrailContentPolicyAction::as_str),
            )
            .s(
                "confidence",
                f.confidence()
                    .map(sdk::GuardrailContentFilterConfidence::as_str),
            )
            .s(
                "type",
                f.r#type().map(sdk::GuardrailContentFilterType::as_str),
            );
        });
    })
    .obj(
        "sensitiveInformationPolicy",
        a.sensitive_information_policy(),
        |o, p| {
            o.list("piiEntities", p.pii_entities(), |o, e| {
                o.s(
                    "action",
                    e.action()
                        .map(sdk::GuardrailSensitiveInformationPolicyAction::as_str),
                )
                .s("match", e.r#match())
                .s("type", e.r#type().map(sdk::GuardrailPiiEntityType::as_str));
            })
            .list("regexes", p.regexes(), |o, r| {
                o.s(
                    "action",
                    r.action()
                        .map(sdk::GuardrailSensitiveInformationPolicyAction::as_str),
                )
                .s("match", r.r#match())
                .s("name", r.name())
                .s("regex", r.regex());
            });
        },
    )
    .obj("topicPolicy", a.topic_policy(), |o, p| {
        o.list("topics", p.topics(), |o, t| {
            o.s(
                "action",
                t.action().map(sdk::GuardrailTopicPolicyAction::as_str),
            )
            .s("name", t.name())
            .s("type", t.r#type().map(sdk::GuardrailTopicType::as_str));
        });
    })
    .obj("wordPolicy", a.word_policy(), |o, p| {
        o.list("customWords", p.custom_words(), |o, w| {
            o.s(
                "action",
                w.action().map(sdk::GuardrailWordPolicyAction::as_str),
            )
            .s("match", w.r#match());
        })
        .list("managedWordLists", p.managed_word_lists(), |o, w| {
            o.s(
                "action",
                w.action().map(sdk::GuardrailWordPolicyAction::as_str),
            )
            .s("match", w.r#match())
            .s(
                "type",
                w.r#type().map(sdk::GuardrailManagedWordType::as_str),
            );
        });
    });
}

fn chrono_time(t: Option<&SmithyTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

fn read_metadata(m: &sdk::Metadata) -> Metadata {
    let usage = m.usage();
    Metadata {
        start: chrono_time(m.start_time()),
        end: chrono_time(m.end_time()),
        total_time_ms: m.total_time_ms(),
        operation_total_time_ms: m.operation_total_time_ms(),
        input_tokens: usage.and_then(sdk::Usage::input_tokens).map(i64::from),
        output_tokens: usage.and_then(sdk::Usage::output_tokens).map(i64::from),
        client_request_id: owned(m.client_request_id()),
    }
}

/// Writes `metadata` and reads it.
fn metadata(o: &mut Out, m: Option<&sdk::Metadata>) -> Option<Metadata> {
    let m = m?;
    o.key("metadata");
    o.object(|o| {
        o.s("clientRequestId", m.client_request_id())
            .time("endTime", m.end_time())
            .int("operationTotalTimeMs", m.operation_total_time_ms())
            .time("startTime", m.start_time())
            .int("totalTimeMs", m.total_time_ms())
            .obj("usage", m.usage(), |o, u| {
                o.int("inputTokens", u.input_tokens().map(i64::from))
                    .int("outputTokens", u.output_tokens().map(i64::from));
            });
    });
    Some(read_metadata(m))
}

/// One finding line per policy entry, as `domain::trace` words them.
fn findings(assessments: &[sdk::GuardrailAssessment]) -> Vec<String> {
    let line = |parts: &[&str], rest: &[Option<&str>]| {
        let mut out = parts.join(" ");
        for p in rest.iter().flatten() {
            out.push(' ');
            out.push_str(p);
        }
        out
    };
    let mut out = Vec::new();
    for a in assessments {
        for t in a
            .topic_policy()
            .map_or(&[][..], sdk::GuardrailTopicPolicyAssessment::topics)
        {
            out.push(line(
                &["topic"],
                &[
                    t.name(),
                    t.r#type().map(sdk::GuardrailTopicType::as_str),
                    t.action().map(sdk::GuardrailTopicPolicyAction::as_str),
                ],
            ));
        }
        for f in a
            .content_policy()
            .map_or(&[][..], sdk::GuardrailContentPolicyAssessment::filters)
        {
            out.push(line(
                &["content"],
                &[
                    f.r#type().map(sdk::GuardrailContentFilterType::as_str),
                    f.confidence()
                        .map(sdk::GuardrailContentFilterConfidence::as_str),
                    f.action().map(sdk::GuardrailContentPolicyAction::as_str),
                ],
            ));
        }
        let words = a.word_policy();
        for w in words.map_or(&[][..], sdk::GuardrailWordPolicyAssessment::custom_words) {
            out.push(line(
                &["word"],
                &[
                    w.r#match(),
                    w.action().map(sdk::GuardrailWordPolicyAction::as_str),
                ],
            ));
        }
        for w in words.map_or(
            &[][..],
            sdk::GuardrailWordPolicyAssessment::managed_word_lists,
        ) {
            out.push(line(
                &["managed-word"],
                &[
                    w.r#type().map(sdk::GuardrailManagedWordType::as_str),
                    w.r#match(),
                    w.action().map(sdk::GuardrailWordPolicyAction::as_str),
                ],
            ));
        }
        let sensitive = a.sensitive_information_policy();
        for p in sensitive.map_or(
            &[][..],
            sdk::GuardrailSensitiveInformationPolicyAssessment::pii_entities,
        ) {
            out.push(line(
                &["pii"],
                &[
                    p.r#type().map(sdk::GuardrailPiiEntityType::as_str),
                    p.r#match(),
                    p.action()
                        .map(sdk::GuardrailSensitiveInformationPolicyAction::as_str),
                ],
            ));
        }
        for r in sensitive.map_or(
            &[][..],
            sdk::GuardrailSensitiveInformationPolicyAssessment::regexes,
        ) {
            out.push(line(
                &["regex"],
                &[
                    r.name(),
                    r.r#match(),
                    r.action()
                        .map(sdk::GuardrailSensitiveInformationPolicyAction::as_str),
                ],
            ));
        }
    }
    out
}

fn guardrail(o: &mut Out, g: &sdk::GuardrailTrace) -> Guardrail {
    o.s("action", g.action().map(sdk::GuardrailAction::as_str))
        .list("inputAssessments", g.input_assessments(), w_assessment);
    let meta = metadata(o, g.metadata());
    o.list("outputAssessments", g.output_assessments(), w_assessment)
        .s("traceId", g.trace_id());
    Guardrail {
        trace_id: owned(g.trace_id()),
        action: owned(g.action().map(sdk::GuardrailAction::as_str)),
        input_assessments: findings(g.input_assessments()),
        output_assessments: findings(g.output_assessments()),
        metadata: meta,
    }
}

/// `inferenceConfiguration`, its keys sorted as `wire::inference`'s value writes them.
fn inference(o: &mut Out, c: &sdk::InferenceConfiguration) {
    // serde_json writes an f32 as the f64 it widens to, and a NaN or infinity as null.
    let float = |o: &mut Out, k: &str, v: Option<f32>| {
        if let Some(v) = v {
            o.key(k);
            match serde_json::Number::from_f64(f64::from(v)) {
                Some(n) => o.raw(&n.to_string()),
                None => o.raw("null"),
            }
        }
    };
    o.int("maximumLength", c.maximum_length().map(i64::from));
    if !c.stop_sequences().is_empty() {
        o.key("stopSequences");
        o.raw("[");
        for (i, s) in c.stop_sequences().iter().enumerate() {
            if i > 0 {
                o.raw(",");
            }
            o.string(s);
        }
        o.raw("]");
    }
    float(o, "temperature", c.temperature());
    o.int("topK", c.top_k().map(i64::from));
    float(o, "topP", c.top_p());
}

fn model_input(o: &mut Out, m: &mut sdk::ModelInvocationInput) -> ModelInput {
    o.s("foundationModel", m.foundation_model())
        .obj(
            "inferenceConfiguration",
            m.inference_configuration(),
            inference,
        )
        .s("overrideLambda", m.override_lambda())
        .s("parserMode", m.parser_mode().map(sdk::CreationMode::as_str))
        .s(
            "promptCreationMode",
            m.prompt_creation_mode().map(sdk::CreationMode::as_str),
        )
        .s("text", m.text())
        .s("traceId", m.trace_id())
        .s("type", m.r#type().map(sdk::PromptType::as_str));
    ModelInput {
        // Moved out, written above (a prompt is kilobytes, most of the event).
        trace_id: m.trace_id.take(),
        text: m.text.take(),
        prompt_type: owned(m.r#type().map(sdk::PromptType::as_str)),
        foundation_model: m.foundation_model.take(),
        prompt_creation_mode: owned(m.prompt_creation_mode().map(sdk::CreationMode::as_str)),
        parser_mode: owned(m.parser_mode().map(sdk::CreationMode::as_str)),
        override_lambda: m.override_lambda.take(),
    }
}

/// What a pre- or post-processing model output parsed.
/// A phase's `modelInvocationOutput` member: each phase has its own SDK type, with the same
/// accessors (the routing classifier's has no reasoning content).
macro_rules! model_output_of {
    ($o:expr, $m:expr, $parsed:expr) => {
        model_output_of!($o, $m, $parsed, $m.reasoning_content.as_ref())
    };
    ($o:expr, $m:expr, $parsed:expr, $reasoning:expr) => {
        StepEvent::ModelOutput(member($o, "modelInvocationOutput", |o| {
            model_output(
                o,
                &mut $m.trace_id,
                $parsed,
                $m.raw_response.as_mut(),
                $m.metadata.as_ref(),
                $reasoning,
            )
        }))
    };
}

#[derive(Default)]
struct Parsed<'a> {
    /// The `parsedResponse` object was there.
    present: bool,
    rationale: Option<&'a str>,
    is_valid: Option<bool>,
    text: Option<&'a str>,
}

fn model_output(
    o: &mut Out,
    trace_id: &mut Option<String>,
    parsed: &Parsed<'_>,
    raw: Option<&mut sdk::RawResponse>,
    meta: Option<&sdk::Metadata>,
    reasoning: Option<&sdk::ReasoningContentBlock>,
) -> ModelOutput {
    let meta = metadata(o, meta);
    if parsed.present {
        o.key("parsedResponse");
        o.object(|o| {
            o.bool("isValid", parsed.is_valid)
                .s("rationale", parsed.rationale)
                .s("text", parsed.text);
        });
    }
    o.obj("rawResponse", raw.as_deref(), |o, r| {
        o.s("content", r.content());
    });
    // A reasoning member this SDK does not know is left out.
    let mut read_reasoning = None;
    if let Some(t) = reasoning.and_then(|r| r.as_reasoning_text().ok()) {
        o.key("reasoningContent");
        o.object(|o| {
            o.obj("reasoningText", Some(t), |o, t| {
                o.s("signature", t.signature()).s("text", Some(t.text()));
            });
        });
        read_reasoning = Some(Reasoning::Text {
            text: t.text().to_owned(),
            signature: owned(t.signature()),
        });
    } else if let Some(b) = reasoning.and_then(|r| r.as_redacted_content().ok()) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(b.as_ref());
        o.key("reasoningContent");
        o.object(|o| {
            o.s("redactedContent", Some(&encoded));
        });
        read_reasoning = Some(Reasoning::Redacted {
            bytes: encoded.len() / 4 * 3,
        });
    }
    o.s("traceId", trace_id.as_deref());
    ModelOutput {
        trace_id: trace_id.take(),
        // Moved out, written above.
        raw_content: raw.and_then(|r| r.content.take()),
        parsed_rationale: owned(parsed.rationale),
        is_valid: parsed.is_valid,
        parsed_text: owned(parsed.text),
        metadata: meta,
        reasoning: read_reasoning,
    }
}

/// An action's parameters, moved out of the SDK's.
fn parameters<'a>(ps: impl Iterator<Item = &'a mut sdk::Parameter>) -> Vec<Parameter> {
    ps.map(|p| Parameter {
        name: p.name.take().unwrap_or_default(),
        kind: p.r#type.take().unwrap_or_default(),
        value: p.value.take().unwrap_or_default(),
    })
    .collect()
}

/// The members of `wire`'s object `v`, in its (sorted) order, into the object being written.
fn members(o: &mut Out, v: &serde_json::Value) {
    if let serde_json::Value::Object(m) = v {
        for (k, v) in m {
            o.val(k, Some(v));
        }
    }
}

/// `invocationInput`, read from the SDK struct. An action group's call (without a request
/// body), a knowledge-base lookup and a finish are written field by field; the rarer members
/// from `wire`'s value.
fn invocation(o: &mut Out, i: &mut sdk::InvocationInput) -> Invocation {
    let action = i.action_group_invocation_input();
    let rare = i.code_interpreter_invocation_input().is_some()
        || i.agent_collaborator_invocation_input().is_some()
        || action.is_some_and(|a| a.request_body().is_some());
    if rare {
        members(o, &crate::bedrock::wire::invocation_input(i));
    } else {
        o.obj("actionGroupInvocationInput", action, |o, a| {
            o.s("actionGroupName", a.action_group_name())
                .s("apiPath", a.api_path())
                .s(
                    "executionType",
                    a.execution_type().map(sdk::ExecutionType::as_str),
                )
                .s("function", a.function())
                .s("invocationId", a.invocation_id())
                .list("parameters", a.parameters(), |o, p| {
                    o.s("name", p.name())
                        .s("type", p.r#type())
                        .s("value", p.value());
                })
                .s("verb", a.verb());
        })
        .s(
            "invocationType",
            i.invocation_type().map(sdk::InvocationType::as_str),
        )
        .obj(
            "knowledgeBaseLookupInput",
            i.knowledge_base_lookup_input(),
            |o, k| {
                o.s("knowledgeBaseId", k.knowledge_base_id())
                    .s("text", k.text());
            },
        )
        .s("traceId", i.trace_id());
    }
    // Written above: the common members are moved out of `i`, not copied.
    let detail = if let Some(a) = i.action_group_invocation_input.as_mut() {
        InvocationDetail::ActionGroup {
            action_group: a.action_group_name.take(),
            function: a.function.take(),
            api_path: a.api_path.take(),
            verb: a.verb.take(),
            execution_type: owned(a.execution_type().map(sdk::ExecutionType::as_str)),
            invocation_id: a.invocation_id.take(),
            parameters: parameters(a.parameters.iter_mut().flatten()),
            request_body: a.request_body().map(crate::bedrock::wire::request_body),
        }
    } else if let Some(k) = i.knowledge_base_lookup_input.as_mut() {
        InvocationDetail::KnowledgeBase {
            knowledge_base_id: k.knowledge_base_id.take(),
            text: k.text.take(),
        }
    } else if let Some(c) = i.code_interpreter_invocation_input() {
        InvocationDetail::CodeInterpreter {
            code: owned(c.code()),
            files: c.files().to_vec(),
        }
    } else if let Some(c) = i.agent_collaborator_invocation_input() {
        InvocationDetail::AgentCollaborator {
            name: owned(c.agent_collaborator_name()),
            alias_arn: owned(c.agent_collaborator_alias_arn()),
            text: owned(c.input().and_then(sdk::AgentCollaboratorInputPayload::text)),
            returns_control_results: c
                .input()
                .is_some_and(|p| p.return_control_results().is_some()),
        }
    } else if i.invocation_type() == Some(&sdk::InvocationType::Finish) {
        InvocationDetail::Finish
    } else {
        InvocationDetail::Other
    };
    Invocation {
        trace_id: i.trace_id.take(),
        invocation_type: owned(i.invocation_type().map(sdk::InvocationType::as_str)),
        detail,
    }
}

/// The address of a retrieved passage: the first location member (in key order) that carries
/// one, as `domain::trace` reads it from the wire.
fn address(l: &sdk::RetrievalResultLocation) -> Option<String> {
    [
        l.confluence_location().and_then(|x| x.url()),
        l.custom_document_location().and_then(|x| x.id()),
        l.google_drive_location().and_then(|x| x.url()),
        l.kendra_document_location().and_then(|x| x.uri()),
        l.one_drive_location().and_then(|x| x.url()),
        l.s3_location().and_then(|x| x.uri()),
        l.salesforce_location().and_then(|x| x.url()),
        l.share_point_location().and_then(|x| x.url()),
        l.sql_location().and_then(|x| x.query()),
        l.web_location().and_then(|x| x.url()),
    ]
    .into_iter()
    .flatten()
    .next()
    .map(str::to_owned)
}

fn observation(o: &mut Out, ob: &mut sdk::Observation) -> Observation {
    let action = ob.action_group_invocation_output();
    let fin = ob.final_response();
    let rare = ob.knowledge_base_lookup_output().is_some()
        || ob.reprompt_response().is_some()
        || ob.code_interpreter_invocation_output().is_some()
        || ob.agent_collaborator_invocation_output().is_some()
        || (action.is_some() && fin.is_some());
    if rare {
        // Rarer members: written from `wire`'s value (traceId and type included).
        members(o, &crate::bedrock::wire::observation(ob));
    } else {
        o.obj("actionGroupInvocationOutput", action, |o, a| {
            metadata(o, a.metadata());
            o.s("text", a.text());
        })
        .obj("finalResponse", fin, |o, f| {
            metadata(o, f.metadata());
            o.s("text", f.text());
        })
        .s("traceId", ob.trace_id())
        .s("type", ob.r#type().map(sdk::Type::as_str));
    }
    Observation {
        trace_id: ob.trace_id.take(),
        observation_type: owned(ob.r#type().map(sdk::Type::as_str)),
        detail: observation_detail(ob),
    }
}

/// The observation's detail, tried in the order `domain::trace` tries the wire's members. Its
/// texts are moved out of `ob`, which is written already.
fn observation_detail(ob: &mut sdk::Observation) -> ObservationDetail {
    let meta = |m: Option<&sdk::Metadata>| m.map(read_metadata);
    if let Some(a) = ob.action_group_invocation_output.as_mut() {
        ObservationDetail::ActionGroup {
            text: a.text.take(),
            metadata: meta(a.metadata()),
        }
    } else if let Some(k) = ob.knowledge_base_lookup_output.as_mut() {
        ObservationDetail::KnowledgeBase {
            references: k
                .retrieved_references
                .iter_mut()
                .flatten()
                .map(|r| Reference {
                    content: r.content.as_mut().map(|c| std::mem::take(&mut c.text)),
                    location_type: r.location().map(|l| l.r#type().as_str().to_owned()),
                    location: r.location().and_then(address),
                })
                .collect(),
            metadata: meta(k.metadata()),
        }
    } else if let Some(f) = ob.final_response.as_mut() {
        ObservationDetail::FinalResponse {
            text: f.text.take(),
            metadata: meta(f.metadata()),
        }
    } else if let Some(r) = ob.reprompt_response() {
        ObservationDetail::Reprompt {
            text: owned(r.text()),
            source: owned(r.source().map(sdk::Source::as_str)),
        }
    } else if let Some(c) = ob.code_interpreter_invocation_output() {
        ObservationDetail::CodeInterpreter {
            output: owned(c.execution_output()),
            error: owned(c.execution_error()),
            files: c.files().to_vec(),
            timed_out: c.execution_timeout(),
            metadata: meta(c.metadata()),
        }
    } else if let Some(c) = ob.agent_collaborator_invocation_output() {
        let output = c.output();
        ObservationDetail::AgentCollaborator {
            name: owned(c.agent_collaborator_name()),
            alias_arn: owned(c.agent_collaborator_alias_arn()),
            text: owned(output.and_then(sdk::AgentCollaboratorOutputPayload::text)),
            return_control_invocation_id: owned(
                output
                    .and_then(sdk::AgentCollaboratorOutputPayload::return_control_payload)
                    .and_then(sdk::ReturnControlPayload::invocation_id),
            ),
            metadata: meta(c.metadata()),
        }
    } else {
        ObservationDetail::Bare
    }
}

/// `{"<key>": {...}}`: a union member, written by `f`.
fn member<T>(o: &mut Out, key: &str, f: impl FnOnce(&mut Out) -> T) -> T {
    o.key(key);
    o.object(f)
}

fn rationale(o: &mut Out, r: &mut sdk::Rationale) -> StepEvent {
    member(o, "rationale", |o| {
        o.s("text", r.text()).s("traceId", r.trace_id());
    });
    StepEvent::Rationale {
        trace_id: r.trace_id.take(),
        text: r.text.take(),
    }
}

fn step(o: &mut Out, t: &mut sdk::Trace) -> Option<(Phase, StepEvent)> {
    use sdk::Trace as T;
    let no_parse = Parsed::default();
    Some(match t {
        T::PreProcessingTrace(p) => {
            use sdk::PreProcessingTrace as P;
            let event = member(o, Phase::PreProcessing.wire_key(), |o| match p {
                P::ModelInvocationInput(m) => {
                    StepEvent::ModelInput(member(o, "modelInvocationInput", |o| model_input(o, m)))
                }
                P::ModelInvocationOutput(m) => {
                    let parsed = m
                        .parsed_response
                        .as_ref()
                        .map_or_else(Parsed::default, |p| Parsed {
                            present: true,
                            rationale: p.rationale(),
                            is_valid: p.is_valid(),
                            text: None,
                        });
                    model_output_of!(o, m, &parsed)
                }
                _ => StepEvent::Unknown { key: None },
            });
            (Phase::PreProcessing, event)
        }
        T::OrchestrationTrace(t) => {
            use sdk::OrchestrationTrace as Or;
            let event = member(o, Phase::Orchestration.wire_key(), |o| match t {
                Or::Rationale(r) => rationale(o, r),
                Or::InvocationInput(i) => {
                    StepEvent::InvocationInput(member(o, "invocationInput", |o| invocation(o, i)))
                }
                Or::Observation(ob) => {
                    StepEvent::Observation(member(o, "observation", |o| observation(o, ob)))
                }
                Or::ModelInvocationInput(m) => {
                    StepEvent::ModelInput(member(o, "modelInvocationInput", |o| model_input(o, m)))
                }
                Or::ModelInvocationOutput(m) => {
                    model_output_of!(o, m, &no_parse)
                }
                _ => StepEvent::Unknown { key: None },
            });
            (Phase::Orchestration, event)
        }
        T::PostProcessingTrace(p) => {
            use sdk::PostProcessingTrace as P;
            let event = member(o, Phase::PostProcessing.wire_key(), |o| match p {
                P::ModelInvocationInput(m) => {
                    StepEvent::ModelInput(member(o, "modelInvocationInput", |o| model_input(o, m)))
                }
                P::ModelInvocationOutput(m) => {
                    let parsed = m
                        .parsed_response
                        .as_ref()
                        .map_or_else(Parsed::default, |p| Parsed {
                            present: true,
                            rationale: None,
                            is_valid: None,
                            text: p.text(),
                        });
                    model_output_of!(o, m, &parsed)
                }
                _ => StepEvent::Unknown { key: None },
            });
            (Phase::PostProcessing, event)
        }
        T::RoutingClassifierTrace(r) => {
            use sdk::RoutingClassifierTrace as R;
            let event = member(o, Phase::RoutingClassifier.wire_key(), |o| match r {
                R::InvocationInput(i) => {
                    StepEvent::InvocationInput(member(o, "invocationInput", |o| invocation(o, i)))
                }
                R::Observation(ob) => {
                    StepEvent::Observation(member(o, "observation", |o| observation(o, ob)))
                }
                R::ModelInvocationInput(m) => {
                    StepEvent::ModelInput(member(o, "modelInvocationInput", |o| model_input(o, m)))
                }
                R::ModelInvocationOutput(m) => {
                    model_output_of!(o, m, &no_parse, None)
                }
                _ => StepEvent::Unknown { key: None },
            });
            (Phase::RoutingClassifier, event)
        }
        _ => return None,
    })
}

fn trace(o: &mut Out, t: &mut sdk::Trace) -> TraceKind {
    use sdk::Trace as T;
    if let Some((phase, event)) = step(o, t) {
        return TraceKind::Step { phase, event };
    }
    match t {
        T::GuardrailTrace(g) => {
            TraceKind::Guardrail(member(o, "guardrailTrace", |o| guardrail(o, g)))
        }
        T::FailureTrace(f) => member(o, "failureTrace", |o| {
            o.int("failureCode", f.failure_code().map(i64::from))
                .s("failureReason", f.failure_reason());
            let meta = metadata(o, f.metadata());
            o.s("traceId", f.trace_id());
            TraceKind::Failure {
                trace_id: owned(f.trace_id()),
                reason: owned(f.failure_reason()),
                code: f.failure_code().map(i64::from),
                metadata: meta,
            }
        }),
        T::CustomOrchestrationTrace(c) => member(o, "customOrchestrationTrace", |o| {
            o.obj("event", c.event(), |o, e| {
                o.s("text", e.text());
            })
            .s("traceId", c.trace_id());
            TraceKind::CustomOrchestration {
                trace_id: owned(c.trace_id()),
                text: owned(c.event().and_then(sdk::CustomOrchestrationTraceEvent::text)),
            }
        }),
        _ => TraceKind::Unknown { key: None },
    }
}

/// Room for a model-input part's prompt, escapes included: most of its JSON, so the text is
/// sized for it once instead of doubling its way there.
fn prompt_len(t: Option<&sdk::Trace>) -> usize {
    use sdk::Trace as T;
    let input = match t {
        Some(
            T::OrchestrationTrace(sdk::OrchestrationTrace::ModelInvocationInput(m))
            | T::PreProcessingTrace(sdk::PreProcessingTrace::ModelInvocationInput(m))
            | T::PostProcessingTrace(sdk::PostProcessingTrace::ModelInvocationInput(m))
            | T::RoutingClassifierTrace(sdk::RoutingClassifierTrace::ModelInvocationInput(m)),
        ) => m.text(),
        _ => None,
    };
    input.map_or(0, |t| t.len() + t.len() / 4)
}

/// A stream's TracePart as the domain's event, its raw JSON kept as text (see the module doc).
pub fn trace_event(mut p: sdk::TracePart) -> TraceEvent {
    // Callers this SDK does not know are left out, as `wire::trace_part` leaves them.
    let caller_chain: Vec<String> = p
        .caller_chain()
        .iter()
        .filter_map(|c| c.as_agent_alias_arn().ok())
        .cloned()
        .collect();
    let mut o = Out::with_capacity(512 + prompt_len(p.trace()));
    o.raw("{");
    o.s("agentAliasId", p.agent_alias_id())
        .s("agentId", p.agent_id())
        .s("agentVersion", p.agent_version())
        .list("callerChain", &caller_chain, |o, arn| {
            o.s("agentAliasArn", Some(arn.as_str()));
        });
    o.s("collaboratorName", p.collaborator_name())
        .time("eventTime", p.event_time())
        .s("sessionId", p.session_id());
    let kind = match p.trace.as_mut() {
        Some(t) => {
            o.key("trace");
            o.object(|o| trace(o, t))
        }
        None => TraceKind::Unknown { key: None },
    };
    o.raw("}");
    TraceEvent {
        // Moved out of the part, every one written above.
        agent_id: p.agent_id.take(),
        agent_alias_id: p.agent_alias_id.take(),
        agent_version: p.agent_version.take(),
        session_id: p.session_id.take(),
        event_time: chrono_time(p.event_time()),
        collaborator_name: p.collaborator_name.take(),
        caller_chain,
        kind,
        raw: RawJson::Text(o.into_string().into_boxed_str()),
    }
}
