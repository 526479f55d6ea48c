//! SDK shapes to wire JSON and back: every stream event is rebuilt, through the SDK's accessors,
//! as the JSON Bedrock sent (keys as on the wire, absent fields left out), which is what the
//! store keeps as "raw" and what `domain::trace` and `domain::validate` read. Results go the
//! other way, from the domain's `InvocationResult` to the SDK's `InvocationResultMember`.

use std::collections::HashMap;

use aws_sdk_bedrockagentruntime::types as sdk;
use aws_smithy_types::date_time::Format;
use aws_smithy_types::{DateTime as SmithyTime, Document};
use base64::Engine;
use serde_json::{Map, Value, json};

pub use super::event::trace_event;
use crate::domain::resume::{ConfirmationState, InvocationResult, ResponseState, ResultTarget};

/// A JSON object that leaves out what is absent.
#[derive(Debug, Default)]
struct Obj(Map<String, Value>);

impl Obj {
    fn s(mut self, key: &str, v: Option<&str>) -> Self {
        if let Some(v) = v {
            self.0.insert(key.to_owned(), Value::String(v.to_owned()));
        }
        self
    }

    fn v(mut self, key: &str, v: Option<Value>) -> Self {
        if let Some(v) = v {
            self.0.insert(key.to_owned(), v);
        }
        self
    }

    /// Lists are left out when empty, as the SDK cannot tell empty from absent.
    fn list(mut self, key: &str, items: Vec<Value>) -> Self {
        if !items.is_empty() {
            self.0.insert(key.to_owned(), Value::Array(items));
        }
        self
    }

    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

/// RFC 3339 with whatever sub-second digits were sent (nanoseconds survive).
pub fn time(t: &SmithyTime) -> Value {
    let mut out = String::new();
    if write_time(&mut out, t) {
        Value::String(out)
    } else {
        Value::Null
    }
}

/// Appends `t` to `out` as RFC 3339 in UTC with the nanoseconds Bedrock sent (chrono's
/// `to_rfc3339_opts(SecondsFormat::AutoSi, true)`: no fraction when it is zero, else 3, 6 or 9
/// digits); false (nothing appended) when it has no such form. Smithy's own formatter keeps
/// microseconds only. Written digit by digit: every trace event has a time or three, and going
/// through chrono's formatter and a `String` of its own was a tenth of the runner's mapping.
pub(crate) fn write_time(out: &mut String, t: &SmithyTime) -> bool {
    use chrono::{Datelike as _, Timelike as _};
    let Some(c) = chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()) else {
        return match t.fmt(Format::DateTime) {
            Ok(s) => {
                out.push_str(&s);
                true
            }
            Err(_) => false,
        };
    };
    let (year, nano) = (c.year(), c.nanosecond());
    if !(0..=9999).contains(&year) || nano >= 1_000_000_000 {
        // Five-digit or negative years, leap seconds: chrono's own way.
        out.push_str(&c.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
        return true;
    }
    // Digits into a stack buffer, then one copy: `YYYY-MM-DDTHH:MM:SS.fffffffffZ` is 30 bytes.
    let mut text = [0_u8; 30];
    let mut len = 0;
    let mut put = |n: u32, width: u32, after: u8| {
        let mut rest = n;
        for at in (len..len + width as usize).rev() {
            text[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        len += width as usize;
        text[len] = after;
        len += 1;
    };
    put(year.unsigned_abs(), 4, b'-');
    put(c.month(), 2, b'-');
    put(c.day(), 2, b'T');
    put(c.hour(), 2, b':');
    put(c.minute(), 2, b':');
    if nano == 0 {
        put(c.second(), 2, b'Z');
    } else {
        put(c.second(), 2, b'.');
        if nano % 1_000_000 == 0 {
            put(nano / 1_000_000, 3, b'Z');
        } else if nano % 1_000 == 0 {
            put(nano / 1_000, 6, b'Z');
        } else {
            put(nano, 9, b'Z');
        }
    }
    // Only ASCII digits and separators were written.
    out.push_str(std::str::from_utf8(&text[..len]).unwrap_or_default());
    true
}

fn strings(items: &[String]) -> Vec<Value> {
    items.iter().map(|s| json!(s)).collect()
}

fn document(d: &Document) -> Value {
    match d {
        Document::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), document(v))).collect())
        }
        Document::Array(a) => Value::Array(a.iter().map(document).collect()),
        Document::Number(n) => match *n {
            aws_smithy_types::Number::PosInt(u) => json!(u),
            aws_smithy_types::Number::NegInt(i) => json!(i),
            aws_smithy_types::Number::Float(f) => json!(f),
        },
        Document::String(s) => json!(s),
        Document::Bool(b) => json!(b),
        Document::Null => Value::Null,
    }
}

fn metadata(m: &sdk::Metadata) -> Value {
    Obj::default()
        .v("startTime", m.start_time().map(time))
        .v("endTime", m.end_time().map(time))
        .v("totalTimeMs", m.total_time_ms().map(|n| json!(n)))
        .v(
            "operationTotalTimeMs",
            m.operation_total_time_ms().map(|n| json!(n)),
        )
        .s("clientRequestId", m.client_request_id())
        .v(
            "usage",
            m.usage().map(|u| {
                Obj::default()
                    .v("inputTokens", u.input_tokens().map(|n| json!(n)))
                    .v("outputTokens", u.output_tokens().map(|n| json!(n)))
                    .done()
            }),
        )
        .done()
}

fn parameter(name: Option<&str>, kind: Option<&str>, value: Option<&str>) -> Value {
    Obj::default()
        .s("name", name)
        .s("type", kind)
        .s("value", value)
        .done()
}

fn guardrail_assessment(a: &sdk::GuardrailAssessment) -> Value {
    let topic = a.topic_policy().map(|p| {
        Obj::default()
            .list(
                "topics",
                p.topics()
                    .iter()
                    .map(|t| {
                        Obj::default()
                            .s("name", t.name())
                            .s("type", t.r#type().map(sdk::GuardrailTopicType::as_str))
                            .s(
                                "action",
                                t.action().map(sdk::GuardrailTopicPolicyAction::as_str),
                            )
                            .done()
                    })
                    .collect(),
            )
            .done()
    });
    let content = a.content_policy().map(|p| {
        Obj::default()
            .list(
                "filters",
                p.filters()
                    .iter()
                    .map(|f| {
                        Obj::default()
                            .s(
                                "type",
                                f.r#type().map(sdk::GuardrailContentFilterType::as_str),
                            )
                            .s(
                                "confidence",
                                f.confidence()
                                    .map(sdk::GuardrailContentFilterConfidence::as_str),
                            )
                            .s(
                                "action",
                                f.action().map(sdk::GuardrailContentPolicyAction::as_str),
                            )
                            .done()
                    })
                    .collect(),
            )
            .done()
    });
    let word = a.word_policy().map(|p| {
        Obj::default()
            .list(
                "customWords",
                p.custom_words()
                    .iter()
                    .map(|w| {
                        Obj::default()
                            .s("match", w.r#match())
                            .s(
                                "action",
                                w.action().map(sdk::GuardrailWordPolicyAction::as_str),
                            )
                            .done()
                    })
                    .collect(),
            )
            .list(
                "managedWordLists",
                p.managed_word_lists()
                    .iter()
                    .map(|w| {
                        Obj::default()
                            .s("match", w.r#match())
                            .s(
                                "type",
                                w.r#type().map(sdk::GuardrailManagedWordType::as_str),
                            )
                            .s(
                                "action",
                                w.action().map(sdk::GuardrailWordPolicyAction::as_str),
                            )
                            .done()
                    })
                    .collect(),
            )
            .done()
    });
    let sensitive = a.sensitive_information_policy().map(|p| {
        Obj::default()
            .list(
                "piiEntities",
                p.pii_entities()
                    .iter()
                    .map(|e| {
                        Obj::default()
                            .s("type", e.r#type().map(sdk::GuardrailPiiEntityType::as_str))
                            .s("match", e.r#match())
                            .s(
                                "action",
                                e.action()
                                    .map(sdk::GuardrailSensitiveInformationPolicyAction::as_str),
                            )
                            .done()
                    })
                    .collect(),
            )
            .list(
                "regexes",
                p.regexes()
                    .iter()
                    .map(|r| {
                        Obj::default()
                            .s("name", r.name())
                            .s("regex", r.regex())
                            .s("match", r.r#match())
                            .s(
                                "action",
                                r.action()
                                    .map(sdk::GuardrailSensitiveInformationPolicyAction::as_str),
                            )
                            .done()
                    })
                    .collect(),
            )
            .done()
    });
    Obj::default()
        .v("topicPolicy", topic)
        .v("contentPolicy", content)
        .v("wordPolicy", word)
        .v("sensitiveInformationPolicy", sensitive)
        .done()
}

/// `inferenceConfiguration` as sent.
pub(crate) fn inference(c: &sdk::InferenceConfiguration) -> Value {
    Obj::default()
        .v("temperature", c.temperature().map(|n| json!(n)))
        .v("topP", c.top_p().map(|n| json!(n)))
        .v("topK", c.top_k().map(|n| json!(n)))
        .v("maximumLength", c.maximum_length().map(|n| json!(n)))
        .list("stopSequences", strings(c.stop_sequences()))
        .done()
}

fn model_input(m: &sdk::ModelInvocationInput) -> Value {
    let inference = m.inference_configuration().map(inference);
    Obj::default()
        .s("traceId", m.trace_id())
        .s("text", m.text())
        .s("type", m.r#type().map(sdk::PromptType::as_str))
        .s("overrideLambda", m.override_lambda())
        .s(
            "promptCreationMode",
            m.prompt_creation_mode().map(sdk::CreationMode::as_str),
        )
        .v("inferenceConfiguration", inference)
        .s("parserMode", m.parser_mode().map(sdk::CreationMode::as_str))
        .s("foundationModel", m.foundation_model())
        .done()
}

fn raw_response(r: Option<&sdk::RawResponse>) -> Option<Value> {
    r.map(|r| Obj::default().s("content", r.content()).done())
}

fn reasoning(r: Option<&sdk::ReasoningContentBlock>) -> Option<Value> {
    let r = r?;
    if let Ok(t) = r.as_reasoning_text() {
        return Some(json!({ "reasoningText": Obj::default()
            .s("text", Some(t.text()))
            .s("signature", t.signature())
            .done() }));
    }
    if let Ok(b) = r.as_redacted_content() {
        return Some(json!({
            "redactedContent": base64::engine::general_purpose::STANDARD.encode(b.as_ref())
        }));
    }
    None
}

/// A model output; pre- and post-processing add their `parsedResponse`.
fn model_output(
    trace_id: Option<&str>,
    parsed: Option<Value>,
    raw: Option<&sdk::RawResponse>,
    meta: Option<&sdk::Metadata>,
    reasoning_content: Option<&sdk::ReasoningContentBlock>,
) -> Value {
    Obj::default()
        .s("traceId", trace_id)
        .v("parsedResponse", parsed)
        .v("rawResponse", raw_response(raw))
        .v("metadata", meta.map(metadata))
        .v("reasoningContent", reasoning(reasoning_content))
        .done()
}

pub(crate) fn request_body(b: &sdk::RequestBody) -> Value {
    let content: Map<String, Value> = b
        .content()
        .map(|c| {
            let mut media: Vec<_> = c.iter().collect();
            media.sort_by(|a, b| a.0.cmp(b.0));
            media
                .into_iter()
                .map(|(k, ps)| {
                    let ps = ps
                        .iter()
                        .map(|p| parameter(p.name(), p.r#type(), p.value()))
                        .collect();
                    (k.clone(), Value::Array(ps))
                })
                .collect()
        })
        .unwrap_or_default();
    json!({ "content": content })
}

pub(crate) fn invocation_input(i: &sdk::InvocationInput) -> Value {
    let action = i.action_group_invocation_input().map(|a| {
        Obj::default()
            .s("actionGroupName", a.action_group_name())
            .s("verb", a.verb())
            .s("apiPath", a.api_path())
            .list(
                "parameters",
                a.parameters()
                    .iter()
                    .map(|p| parameter(p.name(), p.r#type(), p.value()))
                    .collect(),
            )
            .v("requestBody", a.request_body().map(request_body))
            .s("function", a.function())
            .s(
                "executionType",
                a.execution_type().map(sdk::ExecutionType::as_str),
            )
            .s("invocationId", a.invocation_id())
            .done()
    });
    let kb = i.knowledge_base_lookup_input().map(|k| {
        Obj::default()
            .s("text", k.text())
            .s("knowledgeBaseId", k.knowledge_base_id())
            .done()
    });
    let code = i.code_interpreter_invocation_input().map(|c| {
        Obj::default()
            .s("code", c.code())
            .list("files", strings(c.files()))
            .done()
    });
    let collaborator = i.agent_collaborator_invocation_input().map(|c| {
        Obj::default()
            .s("agentCollaboratorName", c.agent_collaborator_name())
            .s(
                "agentCollaboratorAliasArn",
                c.agent_collaborator_alias_arn(),
            )
            .v(
                "input",
                c.input().map(|p| {
                    Obj::default()
                        .s("type", p.r#type().map(sdk::PayloadType::as_str))
                        .s("text", p.text())
                        .v(
                            "returnControlResults",
                            p.return_control_results().map(return_control_results),
                        )
                        .done()
                }),
            )
            .done()
    });
    Obj::default()
        .s("traceId", i.trace_id())
        .s(
            "invocationType",
            i.invocation_type().map(sdk::InvocationType::as_str),
        )
        .v("actionGroupInvocationInput", action)
        .v("knowledgeBaseLookupInput", kb)
        .v("codeInterpreterInvocationInput", code)
        .v("agentCollaboratorInvocationInput", collaborator)
        .done()
}

fn return_control_results(r: &sdk::ReturnControlResults) -> Value {
    Obj::default()
        .s("invocationId", r.invocation_id())
        .list(
            "returnControlInvocationResults",
            r.return_control_invocation_results()
                .iter()
                .map(result_member_json)
                .collect(),
        )
        .done()
}

fn content_body_map(m: Option<&HashMap<String, sdk::ContentBody>>) -> Option<Value> {
    let m = m?;
    let mut keys: Vec<_> = m.keys().collect();
    keys.sort();
    Some(Value::Object(
        keys.into_iter()
            .map(|k| (k.clone(), Obj::default().s("body", m[k].body()).done()))
            .collect(),
    ))
}

/// An SDK result member as wire JSON (for collaborator traces and tests).
pub fn result_member_json(r: &sdk::InvocationResultMember) -> Value {
    if let Ok(f) = r.as_function_result() {
        return json!({ "functionResult": Obj::default()
            .s("actionGroup", Some(f.action_group()))
            .s("confirmationState", f.confirmation_state().map(sdk::ConfirmationState::as_str))
            .s("function", f.function())
            .v("responseBody", content_body_map(f.response_body()))
            .s("responseState", f.response_state().map(sdk::ResponseState::as_str))
            .s("agentId", f.agent_id())
            .done() });
    }
    if let Ok(a) = r.as_api_result() {
        return json!({ "apiResult": Obj::default()
            .s("actionGroup", Some(a.action_group()))
            .s("httpMethod", a.http_method())
            .s("apiPath", a.api_path())
            .s("confirmationState", a.confirmation_state().map(sdk::ConfirmationState::as_str))
            .s("responseState", a.response_state().map(sdk::ResponseState::as_str))
            .v("httpStatusCode", a.http_status_code().map(|n| json!(n)))
            .v("responseBody", content_body_map(a.response_body()))
            .s("agentId", a.agent_id())
            .done() });
    }
    json!({})
}

fn location(l: &sdk::RetrievalResultLocation) -> Value {
    let url = |key: &str, v: Option<&str>| Obj::default().s(key, v).done();
    Obj::default()
        .s("type", Some(l.r#type().as_str()))
        .v("s3Location", l.s3_location().map(|x| url("uri", x.uri())))
        .v("webLocation", l.web_location().map(|x| url("url", x.url())))
        .v(
            "confluenceLocation",
            l.confluence_location().map(|x| url("url", x.url())),
        )
        .v(
            "salesforceLocation",
            l.salesforce_location().map(|x| url("url", x.url())),
        )
        .v(
            "sharePointLocation",
            l.share_point_location().map(|x| url("url", x.url())),
        )
        .v(
            "customDocumentLocation",
            l.custom_document_location().map(|x| url("id", x.id())),
        )
        .v(
            "kendraDocumentLocation",
            l.kendra_document_location().map(|x| url("uri", x.uri())),
        )
        .v(
            "sqlLocation",
            l.sql_location().map(|x| url("query", x.query())),
        )
        .v(
            "oneDriveLocation",
            l.one_drive_location().map(|x| url("url", x.url())),
        )
        .v(
            "googleDriveLocation",
            l.google_drive_location().map(|x| url("url", x.url())),
        )
        .done()
}

fn retrieved_reference(r: &sdk::RetrievedReference) -> Value {
    let meta = r.metadata().map(|m| {
        let mut keys: Vec<_> = m.keys().collect();
        keys.sort();
        Value::Object(
            keys.into_iter()
                .map(|k| (k.clone(), document(&m[k])))
                .collect(),
        )
    });
    Obj::default()
        .v(
            "content",
            r.content().map(|c| {
                Obj::default()
                    .s(
                        "type",
                        c.r#type().map(sdk::RetrievalResultContentType::as_str),
                    )
                    .s("text", Some(c.text()))
                    .s("byteContent", c.byte_content())
                    .done()
            }),
        )
        .v("location", r.location().map(location))
        .v("metadata", meta)
        .done()
}

pub(crate) fn observation(o: &sdk::Observation) -> Value {
    let action = o.action_group_invocation_output().map(|a| {
        Obj::default()
            .s("text", a.text())
            .v("metadata", a.metadata().map(metadata))
            .done()
    });
    let collaborator = o.agent_collaborator_invocation_output().map(|c| {
        Obj::default()
            .s("agentCollaboratorName", c.agent_collaborator_name())
            .s(
                "agentCollaboratorAliasArn",
                c.agent_collaborator_alias_arn(),
            )
            .v(
                "output",
                c.output().map(|p| {
                    Obj::default()
                        .s("type", p.r#type().map(sdk::PayloadType::as_str))
                        .s("text", p.text())
                        .v(
                            "returnControlPayload",
                            p.return_control_payload().map(return_control),
                        )
                        .done()
                }),
            )
            .v("metadata", c.metadata().map(metadata))
            .done()
    });
    let kb = o.knowledge_base_lookup_output().map(|k| {
        Obj::default()
            .list(
                "retrievedReferences",
                k.retrieved_references()
                    .iter()
                    .map(retrieved_reference)
                    .collect(),
            )
            .v("metadata", k.metadata().map(metadata))
            .done()
    });
    let final_response = o.final_response().map(|f| {
        Obj::default()
            .s("text", f.text())
            .v("metadata", f.metadata().map(metadata))
            .done()
    });
    let reprompt = o.reprompt_response().map(|r| {
        Obj::default()
            .s("text", r.text())
            .s("source", r.source().map(sdk::Source::as_str))
            .done()
    });
    let code = o.code_interpreter_invocation_output().map(|c| {
        Obj::default()
            .s("executionOutput", c.execution_output())
            .s("executionError", c.execution_error())
            .list("files", strings(c.files()))
            .v("executionTimeout", c.execution_timeout().map(|b| json!(b)))
            .v("metadata", c.metadata().map(metadata))
            .done()
    });
    Obj::default()
        .s("traceId", o.trace_id())
        .s("type", o.r#type().map(sdk::Type::as_str))
        .v("actionGroupInvocationOutput", action)
        .v("agentCollaboratorInvocationOutput", collaborator)
        .v("knowledgeBaseLookupOutput", kb)
        .v("finalResponse", final_response)
        .v("repromptResponse", reprompt)
        .v("codeInterpreterInvocationOutput", code)
        .done()
}

fn rationale(r: &sdk::Rationale) -> Value {
    Obj::default()
        .s("traceId", r.trace_id())
        .s("text", r.text())
        .done()
}

/// `{key: value}` for a union member, or `{}` for a member this SDK does not know.
fn one(key: &str, value: Value) -> Value {
    let mut m = Map::new();
    m.insert(key.to_owned(), value);
    Value::Object(m)
}

fn orchestration(t: &sdk::OrchestrationTrace) -> Value {
    use sdk::OrchestrationTrace as O;
    match t {
        O::Rationale(r) => one("rationale", rationale(r)),
        O::InvocationInput(i) => one("invocationInput", invocation_input(i)),
        O::Observation(o) => one("observation", observation(o)),
        O::ModelInvocationInput(m) => one("modelInvocationInput", model_input(m)),
        O::ModelInvocationOutput(m) => one(
            "modelInvocationOutput",
            model_output(
                m.trace_id(),
                None,
                m.raw_response(),
                m.metadata(),
                m.reasoning_content(),
            ),
        ),
        _ => json!({}),
    }
}

fn pre_processing(t: &sdk::PreProcessingTrace) -> Value {
    use sdk::PreProcessingTrace as P;
    match t {
        P::ModelInvocationInput(m) => one("modelInvocationInput", model_input(m)),
        P::ModelInvocationOutput(m) => {
            let parsed = m.parsed_response().map(|p| {
                Obj::default()
                    .s("rationale", p.rationale())
                    .v("isValid", p.is_valid().map(|b| json!(b)))
                    .done()
            });
            one(
                "modelInvocationOutput",
                model_output(
                    m.trace_id(),
                    parsed,
                    m.raw_response(),
                    m.metadata(),
                    m.reasoning_content(),
                ),
            )
        }
        _ => json!({}),
    }
}

fn post_processing(t: &sdk::PostProcessingTrace) -> Value {
    use sdk::PostProcessingTrace as P;
    match t {
        P::ModelInvocationInput(m) => one("modelInvocationInput", model_input(m)),
        P::ModelInvocationOutput(m) => {
            let parsed = m
                .parsed_response()
                .map(|p| Obj::default().s("text", p.text()).done());
            one(
                "modelInvocationOutput",
                model_output(
                    m.trace_id(),
                    parsed,
                    m.raw_response(),
                    m.metadata(),
                    m.reasoning_content(),
                ),
            )
        }
        _ => json!({}),
    }
}

fn routing(t: &sdk::RoutingClassifierTrace) -> Value {
    use sdk::RoutingClassifierTrace as R;
    match t {
        R::InvocationInput(i) => one("invocationInput", invocation_input(i)),
        R::Observation(o) => one("observation", observation(o)),
        R::ModelInvocationInput(m) => one("modelInvocationInput", model_input(m)),
        R::ModelInvocationOutput(m) => one(
            "modelInvocationOutput",
            model_output(m.trace_id(), None, m.raw_response(), m.metadata(), None),
        ),
        _ => json!({}),
    }
}

fn trace(t: &sdk::Trace) -> Value {
    use sdk::Trace as T;
    match t {
        T::GuardrailTrace(g) => one(
            "guardrailTrace",
            Obj::default()
                .s("action", g.action().map(sdk::GuardrailAction::as_str))
                .s("traceId", g.trace_id())
                .list(
                    "inputAssessments",
                    g.input_assessments()
                        .iter()
                        .map(guardrail_assessment)
                        .collect(),
                )
                .list(
                    "outputAssessments",
                    g.output_assessments()
                        .iter()
                        .map(guardrail_assessment)
                        .collect(),
                )
                .v("metadata", g.metadata().map(metadata))
                .done(),
        ),
        T::PreProcessingTrace(p) => one("preProcessingTrace", pre_processing(p)),
        T::OrchestrationTrace(o) => one("orchestrationTrace", orchestration(o)),
        T::PostProcessingTrace(p) => one("postProcessingTrace", post_processing(p)),
        T::RoutingClassifierTrace(r) => one("routingClassifierTrace", routing(r)),
        T::FailureTrace(f) => one(
            "failureTrace",
            Obj::default()
                .s("traceId", f.trace_id())
                .s("failureReason", f.failure_reason())
                .v("failureCode", f.failure_code().map(|n| json!(n)))
                .v("metadata", f.metadata().map(metadata))
                .done(),
        ),
        T::CustomOrchestrationTrace(c) => one(
            "customOrchestrationTrace",
            Obj::default()
                .s("traceId", c.trace_id())
                .v(
                    "event",
                    c.event().map(|e| Obj::default().s("text", e.text()).done()),
                )
                .done(),
        ),
        _ => json!({}),
    }
}

/// A TracePart as the wire's JSON.
pub fn trace_part(p: &sdk::TracePart) -> Value {
    Obj::default()
        .s("agentId", p.agent_id())
        .s("agentAliasId", p.agent_alias_id())
        .s("agentVersion", p.agent_version())
        .s("sessionId", p.session_id())
        .v("eventTime", p.event_time().map(time))
        .s("collaboratorName", p.collaborator_name())
        .list(
            "callerChain",
            p.caller_chain()
                .iter()
                .filter_map(|c| c.as_agent_alias_arn().ok())
                .map(|arn| json!({ "agentAliasArn": arn }))
                .collect(),
        )
        .v("trace", p.trace().map(trace))
        .done()
}

fn api_input(a: &sdk::ApiInvocationInput) -> Value {
    let body = a.request_body().map(|b| {
        let content: Map<String, Value> = b
            .content()
            .map(|c| {
                let mut media: Vec<_> = c.iter().collect();
                media.sort_by(|x, y| x.0.cmp(y.0));
                media
                    .into_iter()
                    .map(|(k, props)| {
                        let ps = props
                            .properties()
                            .iter()
                            .map(|p| parameter(p.name(), p.r#type(), p.value()))
                            .collect();
                        (k.clone(), json!({ "properties": Value::Array(ps) }))
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({ "content": content })
    });
    Obj::default()
        .s("actionGroup", Some(a.action_group()))
        .s("httpMethod", a.http_method())
        .s("apiPath", a.api_path())
        .list(
            "parameters",
            a.parameters()
                .iter()
                .map(|p| parameter(p.name(), p.r#type(), p.value()))
                .collect(),
        )
        .v("requestBody", body)
        .s(
            "actionInvocationType",
            a.action_invocation_type()
                .map(sdk::ActionInvocationType::as_str),
        )
        .s("agentId", a.agent_id())
        .s("collaboratorName", a.collaborator_name())
        .done()
}

fn function_input(f: &sdk::FunctionInvocationInput) -> Value {
    Obj::default()
        .s("actionGroup", Some(f.action_group()))
        .list(
            "parameters",
            f.parameters()
                .iter()
                .map(|p| parameter(p.name(), p.r#type(), p.value()))
                .collect(),
        )
        .s("function", f.function())
        .s(
            "actionInvocationType",
            f.action_invocation_type()
                .map(sdk::ActionInvocationType::as_str),
        )
        .s("agentId", f.agent_id())
        .s("collaboratorName", f.collaborator_name())
        .done()
}

/// A ReturnControlPayload as the wire's JSON. An input member this SDK does not know becomes
/// `{}`, which validation then refuses by name.
pub fn return_control(p: &sdk::ReturnControlPayload) -> Value {
    let inputs = p
        .invocation_inputs()
        .iter()
        .map(|m| {
            if let Ok(a) = m.as_api_invocation_input() {
                json!({ "apiInvocationInput": api_input(a) })
            } else if let Ok(f) = m.as_function_invocation_input() {
                json!({ "functionInvocationInput": function_input(f) })
            } else {
                json!({})
            }
        })
        .collect();
    Obj::default()
        .s("invocationId", p.invocation_id())
        .v("invocationInputs", Some(Value::Array(inputs)))
        .done()
}

/// The text of a chunk (invalid UTF-8 is replaced, never trusted).
pub fn chunk_text(p: &sdk::PayloadPart) -> String {
    p.bytes()
        .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned())
        .unwrap_or_default()
}

/// Why a domain result could not become an SDK result.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the result for action group {action_group}: {detail}")]
pub struct ResultBuildError {
    pub action_group: String,
    pub detail: String,
}

fn body_map(body: Option<&(String, String)>) -> Option<HashMap<String, sdk::ContentBody>> {
    body.map(|(media, text)| {
        HashMap::from([(
            media.clone(),
            sdk::ContentBody::builder().body(text.clone()).build(),
        )])
    })
}

/// The domain's result as the SDK's `InvocationResultMember`.
pub fn result_member(
    r: &InvocationResult,
) -> Result<sdk::InvocationResultMember, ResultBuildError> {
    let confirmation = r.confirmation_state.map(|c| match c {
        ConfirmationState::Confirm => sdk::ConfirmationState::Confirm,
        ConfirmationState::Deny => sdk::ConfirmationState::Deny,
    });
    let response = r.response_state.map(|s| match s {
        ResponseState::Failure => sdk::ResponseState::Failure,
        ResponseState::Reprompt => sdk::ResponseState::Reprompt,
    });
    let err = |e: aws_smithy_types::error::operation::BuildError| ResultBuildError {
        action_group: r.action_group.clone(),
        detail: e.to_string(),
    };
    match &r.target {
        ResultTarget::Function { function } => Ok(sdk::InvocationResultMember::FunctionResult(
            sdk::FunctionResult::builder()
                .action_group(&r.action_group)
                .function(function)
                .set_confirmation_state(confirmation)
                .set_response_state(response)
                .set_response_body(body_map(r.body.as_ref()))
                .set_agent_id(r.agent_id.clone())
                .build()
                .map_err(err)?,
        )),
        ResultTarget::Api {
            api_path,
            http_method,
            http_status_code,
        } => Ok(sdk::InvocationResultMember::ApiResult(
            sdk::ApiResult::builder()
                .action_group(&r.action_group)
                .api_path(api_path)
                .http_method(http_method)
                .set_http_status_code(*http_status_code)
                .set_confirmation_state(confirmation)
                .set_response_state(response)
                .set_response_body(body_map(r.body.as_ref()))
                .set_agent_id(r.agent_id.clone())
                .build()
                .map_err(err)?,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `write_time` must give: chrono's own RFC 3339 form with the nanoseconds kept.
    fn chrono_form(secs: i64, nanos: u32) -> Option<String> {
        chrono::DateTime::from_timestamp(secs, nanos)
            .map(|c| c.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }

    #[test]
    fn times_are_written_as_chrono_writes_them() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut cases: Vec<(i64, u32)> = vec![
            (0, 0),
            (1_700_000_000, 0),
            (1_700_000_000, 5_000_000),
            (1_700_000_000, 120_000),
            (1_700_000_000, 7),
            (1_700_000_000, 999_999_999),
            // 0000-01-01, 9999-12-31T23:59:59, 10000-01-01, and before year 0.
            (-62_167_219_200, 1),
            (253_402_300_799, 100_000_000),
            (253_402_300_800, 0),
            (-62_167_219_201, 0),
        ];
        for _ in 0..20_000 {
            let secs = rng.i64(-62_167_219_200..=253_402_300_799);
            let nanos = match rng.u8(0..4) {
                0 => 0,
                1 => rng.u32(0..1000) * 1_000_000,
                2 => rng.u32(0..1_000_000) * 1000,
                _ => rng.u32(0..1_000_000_000),
            };
            cases.push((secs, nanos));
        }
        for (secs, nanos) in cases {
            let mut out = String::from("x");
            assert!(write_time(
                &mut out,
                &SmithyTime::from_secs_and_nanos(secs, nanos)
            ));
            assert_eq!(
                Some(&out[1..]),
                chrono_form(secs, nanos).as_deref(),
                "{secs} {nanos}"
            );
        }
    }
}
