//! SDK shapes built with their builders, mapped through the accessors (`bedrock::wire`) into
//! wire JSON and agentdeck's `TraceEvent`: every trace variant and inner member, nanosecond
//! timestamps, variants the SDK does not know, and the return-of-control payload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use agentdeck::bedrock::wire;
use agentdeck::domain::trace::{
    InvocationDetail, ObservationDetail, Phase, Reasoning, StepEvent, StepFigures, TraceEvent,
    TraceKind,
};
use aws_sdk_bedrockagentruntime::types::*;
use aws_smithy_types::DateTime as SmithyTime;
use aws_smithy_types::date_time::Format;
use chrono::Timelike;
use serde_json::json;

fn t(s: &str) -> SmithyTime {
    SmithyTime::from_str(s, Format::DateTime).unwrap()
}

fn meta(start: &str, end: &str, total: i64, input: i32, output: i32) -> Metadata {
    Metadata::builder()
        .start_time(t(start))
        .end_time(t(end))
        .total_time_ms(total)
        .usage(
            Usage::builder()
                .input_tokens(input)
                .output_tokens(output)
                .build(),
        )
        .build()
}

fn part(trace: Trace) -> TracePart {
    TracePart::builder()
        .agent_id("PAYAGENT01")
        .agent_alias_id("PRODALIAS")
        .agent_version("3")
        .session_id("sess-1")
        .event_time(t("2025-03-14T18:17:14.009573108Z"))
        .caller_chain(Caller::AgentAliasArn("arn:alias/SUP/LIVE".into()))
        .caller_chain(Caller::AgentAliasArn("arn:alias/PAY/PROD".into()))
        .collaborator_name("payments")
        .trace(trace)
        .build()
}

/// Maps a part both ways and checks they agree: the runner's direct mapping
/// (`wire::trace_event`: fields from the SDK structs, raw JSON written as text) against the
/// reference (`wire::trace_part`'s value, read by `TraceEvent::from_wire`), field for field and
/// byte for byte of the raw JSON.
fn map(trace: Trace) -> TraceEvent {
    mapped(&part(trace))
}

fn mapped(p: &TracePart) -> TraceEvent {
    let reference = TraceEvent::from_wire(wire::trace_part(p));
    let direct = wire::trace_event(p.clone());
    assert_eq!(direct, reference, "the direct mapping differs");
    assert_eq!(
        direct.raw.text().expect("the direct mapping keeps text"),
        serde_json::to_string(&*reference.raw.value()).unwrap(),
        "the raw JSON text differs"
    );
    reference
}

fn orch(o: OrchestrationTrace) -> TraceEvent {
    map(Trace::OrchestrationTrace(o))
}

fn step(e: &TraceEvent) -> (Phase, &StepEvent) {
    match &e.kind {
        TraceKind::Step { phase, event } => (*phase, event),
        other => panic!("{other:?}"),
    }
}

fn param(name: &str, ty: &str, value: &str) -> Parameter {
    Parameter::builder()
        .name(name)
        .r#type(ty)
        .value(value)
        .build()
}

#[test]
fn the_envelope_keeps_nanoseconds_caller_chain_and_collaborator() {
    let e = orch(OrchestrationTrace::Rationale(
        Rationale::builder().trace_id("r-0").text("because").build(),
    ));
    let time = e.event_time.unwrap();
    assert_eq!(time.nanosecond(), 9_573_108);
    assert_eq!(
        e.raw.value()["eventTime"],
        json!("2025-03-14T18:17:14.009573108Z")
    );
    assert_eq!(
        e.caller_chain,
        vec![
            "arn:alias/SUP/LIVE".to_owned(),
            "arn:alias/PAY/PROD".to_owned()
        ]
    );
    assert_eq!(e.collaborator_name.as_deref(), Some("payments"));
    assert_eq!(
        (
            e.agent_id.as_deref(),
            e.agent_alias_id.as_deref(),
            e.agent_version.as_deref(),
            e.session_id.as_deref()
        ),
        (
            Some("PAYAGENT01"),
            Some("PRODALIAS"),
            Some("3"),
            Some("sess-1")
        )
    );
    assert_eq!(e.trace_id(), Some("r-0"));
    assert_eq!(e.rationale(), Some("because"));
    assert_eq!(e.kind_name(), "orchestration/rationale");
    // The raw JSON is the wire's shape, keys as Bedrock names them.
    assert_eq!(
        e.raw,
        json!({
            "agentId": "PAYAGENT01", "agentAliasId": "PRODALIAS", "agentVersion": "3",
            "sessionId": "sess-1", "eventTime": "2025-03-14T18:17:14.009573108Z",
            "collaboratorName": "payments",
            "callerChain": [{"agentAliasArn": "arn:alias/SUP/LIVE"}, {"agentAliasArn": "arn:alias/PAY/PROD"}],
            "trace": {"orchestrationTrace": {"rationale": {"traceId": "r-0", "text": "because"}}}
        })
    );
}

/// Every phase's step events, known and not, and the other kinds, are named `phase/event`.
#[test]
fn kind_names_cover_every_phase_and_member() {
    let members = [
        ("modelInvocationInput", "model-input"),
        ("modelInvocationOutput", "model-output"),
        ("rationale", "rationale"),
        ("invocationInput", "invocation"),
        ("observation", "observation"),
        ("memoryStep", "unknown(memoryStep)"),
    ];
    for phase in Phase::ALL {
        for (member, name) in members {
            let e = TraceEvent::from_wire(json!({
                "trace": { phase.wire_key(): { member: { "traceId": "t-1" } } }
            }));
            assert_eq!(
                e.kind_name(),
                format!("{}/{name}", phase.as_str()),
                "{member}"
            );
        }
    }
    for (trace, name) in [
        (
            json!({ "guardrailTrace": { "action": "NONE" } }),
            "guardrail",
        ),
        (
            json!({ "failureTrace": { "failureReason": "x" } }),
            "failure",
        ),
        (
            json!({ "customOrchestrationTrace": { "traceId": "t" } }),
            "custom-orchestration",
        ),
        (json!({ "memoryTrace": {} }), "unknown(memoryTrace)"),
    ] {
        assert_eq!(
            TraceEvent::from_wire(json!({ "trace": trace })).kind_name(),
            name
        );
    }
}

#[test]
fn guardrail_traces_summarise_every_policy_finding() {
    let assessment = GuardrailAssessment::builder()
        .topic_policy(
            GuardrailTopicPolicyAssessment::builder()
                .topics(
                    GuardrailTopic::builder()
                        .name("Politics")
                        .r#type(GuardrailTopicType::Deny)
                        .action(GuardrailTopicPolicyAction::Blocked)
                        .build(),
                )
                .build(),
        )
        .content_policy(
            GuardrailContentPolicyAssessment::builder()
                .filters(
                    GuardrailContentFilter::builder()
                        .r#type(GuardrailContentFilterType::Hate)
                        .confidence(GuardrailContentFilterConfidence::High)
                        .action(GuardrailContentPolicyAction::Blocked)
                        .build(),
                )
                .build(),
        )
        .word_policy(
            GuardrailWordPolicyAssessment::builder()
                .custom_words(
                    GuardrailCustomWord::builder()
                        .r#match("darn")
                        .action(GuardrailWordPolicyAction::Blocked)
                        .build(),
                )
                .build(),
        )
        .sensitive_information_policy(
            GuardrailSensitiveInformationPolicyAssessment::builder()
                .pii_entities(
                    GuardrailPiiEntityFilter::builder()
                        .r#type(GuardrailPiiEntityType::Email)
                        .r#match("a@b.c")
                        .action(GuardrailSensitiveInformationPolicyAction::Anonymized)
                        .build(),
                )
                .regexes(
                    GuardrailRegexFilter::builder()
                        .name("iban")
                        .r#match("GB00")
                        .action(GuardrailSensitiveInformationPolicyAction::Blocked)
                        .build(),
                )
                .build(),
        )
        .build();
    let e = map(Trace::GuardrailTrace(
        GuardrailTrace::builder()
            .trace_id("g-pre-0")
            .action(GuardrailAction::Intervened)
            .input_assessments(assessment)
            .metadata(meta(
                "2025-03-14T18:17:14.000000000Z",
                "2025-03-14T18:17:14.120000000Z",
                120,
                0,
                0,
            ))
            .build(),
    ));
    let TraceKind::Guardrail(g) = &e.kind else {
        panic!("{:?}", e.kind)
    };
    assert_eq!(g.action.as_deref(), Some("INTERVENED"));
    assert_eq!(g.trace_id.as_deref(), Some("g-pre-0"));
    assert_eq!(
        g.input_assessments,
        vec![
            "topic Politics DENY BLOCKED",
            "content HATE HIGH BLOCKED",
            "word darn BLOCKED",
            "pii EMAIL a@b.c ANONYMIZED",
            "regex iban GB00 BLOCKED",
        ]
    );
    assert!(g.output_assessments.is_empty());
    assert_eq!(StepFigures::of([&e]).duration_ms, Some(120));
    assert_eq!(e.summary(), "INTERVENED (5 findings)");
}

fn model_input(kind: PromptType) -> ModelInvocationInput {
    ModelInvocationInput::builder()
        .trace_id("m-0")
        .text("SYSTEM: the whole prompt\nUSER: hi")
        .r#type(kind)
        .foundation_model("anthropic.claude-3-haiku")
        .prompt_creation_mode(CreationMode::Default)
        .parser_mode(CreationMode::Overridden)
        .override_lambda("arn:lambda")
        .inference_configuration(
            InferenceConfiguration::builder()
                .temperature(0.7)
                .top_p(0.9)
                .top_k(250)
                .maximum_length(2048)
                .stop_sequences("</answer>")
                .stop_sequences("\n\nHuman:")
                .build(),
        )
        .build()
}

#[test]
fn model_inputs_keep_the_full_prompt_in_every_phase() {
    let phases = [
        (
            map(Trace::PreProcessingTrace(
                PreProcessingTrace::ModelInvocationInput(model_input(PromptType::PreProcessing)),
            )),
            Phase::PreProcessing,
            "PRE_PROCESSING",
        ),
        (
            orch(OrchestrationTrace::ModelInvocationInput(model_input(
                PromptType::Orchestration,
            ))),
            Phase::Orchestration,
            "ORCHESTRATION",
        ),
        (
            map(Trace::PostProcessingTrace(
                PostProcessingTrace::ModelInvocationInput(model_input(PromptType::PostProcessing)),
            )),
            Phase::PostProcessing,
            "POST_PROCESSING",
        ),
        (
            map(Trace::RoutingClassifierTrace(
                RoutingClassifierTrace::ModelInvocationInput(model_input(
                    PromptType::RoutingClassifier,
                )),
            )),
            Phase::RoutingClassifier,
            "ROUTING_CLASSIFIER",
        ),
    ];
    for (e, phase, ty) in phases {
        let (p, ev) = step(&e);
        assert_eq!(p, phase);
        let StepEvent::ModelInput(m) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(
            m.text.as_deref(),
            Some("SYSTEM: the whole prompt\nUSER: hi")
        );
        assert_eq!(m.prompt_type.as_deref(), Some(ty));
        assert_eq!(
            m.foundation_model.as_deref(),
            Some("anthropic.claude-3-haiku")
        );
        assert_eq!(m.prompt_creation_mode.as_deref(), Some("DEFAULT"));
        assert_eq!(m.parser_mode.as_deref(), Some("OVERRIDDEN"));
        assert_eq!(m.override_lambda.as_deref(), Some("arn:lambda"));
        // Kept in the raw JSON (`mapped` checked it byte for byte), as the f64s serde_json
        // widens the f32s to.
        let raw = serde_json::to_string(&*e.raw.value()).unwrap();
        assert!(
            raw.contains(&format!(
                r#""inferenceConfiguration":{{"maximumLength":2048,"stopSequences":["</answer>","\n\nHuman:"],"temperature":{},"topK":250,"topP":{}}}"#,
                f64::from(0.7_f32),
                f64::from(0.9_f32)
            )),
            "{raw}"
        );
    }
    // A temperature that is no number is written as serde_json writes it: null.
    let odd = orch(OrchestrationTrace::ModelInvocationInput(
        ModelInvocationInput::builder()
            .inference_configuration(
                InferenceConfiguration::builder()
                    .temperature(f32::NAN)
                    .top_p(f32::INFINITY)
                    .build(),
            )
            .build(),
    ));
    assert!(
        serde_json::to_string(&*odd.raw.value())
            .unwrap()
            .contains(r#""inferenceConfiguration":{"temperature":null,"topP":null}"#)
    );
}

#[test]
fn model_outputs_carry_raw_parsed_usage_and_reasoning() {
    let m = meta(
        "2025-03-14T18:17:14.100000000Z",
        "2025-03-14T18:17:15.350000000Z",
        1250,
        1200,
        80,
    );
    let pre = map(Trace::PreProcessingTrace(
        PreProcessingTrace::ModelInvocationOutput(
            PreProcessingModelInvocationOutput::builder()
                .trace_id("p-0")
                .parsed_response(
                    PreProcessingParsedResponse::builder()
                        .rationale("the input is safe")
                        .is_valid(true)
                        .build(),
                )
                .raw_response(
                    RawResponse::builder()
                        .content("<category>E</category>")
                        .build(),
                )
                .metadata(m.clone())
                .reasoning_content(ReasoningContentBlock::ReasoningText(
                    ReasoningTextBlock::builder()
                        .text("thinking...")
                        .signature("sig")
                        .build()
                        .unwrap(),
                ))
                .build(),
        ),
    ));
    let StepEvent::ModelOutput(o) = step(&pre).1 else {
        panic!()
    };
    assert_eq!(o.parsed_rationale.as_deref(), Some("the input is safe"));
    assert_eq!(o.is_valid, Some(true));
    assert_eq!(o.raw_content.as_deref(), Some("<category>E</category>"));
    let md = o.metadata.as_ref().unwrap();
    assert_eq!((md.input_tokens, md.output_tokens), (Some(1200), Some(80)));
    assert_eq!(md.total_time_ms, Some(1250));
    assert_eq!(
        o.reasoning,
        Some(Reasoning::Text {
            text: "thinking...".into(),
            signature: Some("sig".into())
        })
    );
    assert_eq!(pre.rationale(), Some("the input is safe"));

    let post = map(Trace::PostProcessingTrace(
        PostProcessingTrace::ModelInvocationOutput(
            PostProcessingModelInvocationOutput::builder()
                .parsed_response(
                    PostProcessingParsedResponse::builder()
                        .text("final")
                        .build(),
                )
                .reasoning_content(ReasoningContentBlock::RedactedContent(
                    aws_smithy_types::Blob::new(vec![0_u8; 30]),
                ))
                .build(),
        ),
    ));
    let StepEvent::ModelOutput(o) = step(&post).1 else {
        panic!()
    };
    assert_eq!(o.parsed_text.as_deref(), Some("final"));
    assert_eq!(o.reasoning, Some(Reasoning::Redacted { bytes: 30 }));

    let orch_out = orch(OrchestrationTrace::ModelInvocationOutput(
        OrchestrationModelInvocationOutput::builder()
            .trace_id("o-0")
            .raw_response(RawResponse::builder().content("<answer>").build())
            .metadata(m.clone())
            .build(),
    ));
    let routing_out = map(Trace::RoutingClassifierTrace(
        RoutingClassifierTrace::ModelInvocationOutput(
            RoutingClassifierModelInvocationOutput::builder()
                .trace_id("o-0")
                .metadata(m)
                .build(),
        ),
    ));
    // Figures of a step: the metadata span, tokens summed.
    let f = StepFigures::of([&orch_out, &routing_out]);
    assert_eq!(
        f,
        StepFigures {
            duration_ms: Some(1250),
            input_tokens: 2400,
            output_tokens: 160
        }
    );
}

#[test]
fn invocation_inputs_of_every_type() {
    let action = orch(OrchestrationTrace::InvocationInput(
        InvocationInput::builder()
            .trace_id("i-0")
            .invocation_type(InvocationType::ActionGroup)
            .action_group_invocation_input(
                ActionGroupInvocationInput::builder()
                    .action_group_name("ops")
                    .verb("DELETE")
                    .api_path("/clusters/{name}")
                    .parameters(param("name", "string", "blue"))
                    .request_body(
                        RequestBody::builder()
                            .content("application/json", vec![param("force", "boolean", "true")])
                            .build(),
                    )
                    .execution_type(ExecutionType::ReturnControl)
                    .invocation_id("inv-9")
                    .build(),
            )
            .build(),
    ));
    let StepEvent::InvocationInput(i) = step(&action).1 else {
        panic!()
    };
    assert_eq!(i.invocation_type.as_deref(), Some("ACTION_GROUP"));
    let InvocationDetail::ActionGroup {
        action_group,
        api_path,
        verb,
        execution_type,
        invocation_id,
        parameters,
        request_body,
        function,
    } = &i.detail
    else {
        panic!("{:?}", i.detail)
    };
    assert_eq!(action_group.as_deref(), Some("ops"));
    assert_eq!(api_path.as_deref(), Some("/clusters/{name}"));
    assert_eq!(verb.as_deref(), Some("DELETE"));
    assert_eq!(execution_type.as_deref(), Some("RETURN_CONTROL"));
    assert_eq!(invocation_id.as_deref(), Some("inv-9"));
    assert!(function.is_none());
    assert_eq!(parameters[0].value, "blue");
    assert_eq!(
        request_body,
        &Some(
            json!({"content": {"application/json": [{"name": "force", "type": "boolean", "value": "true"}]}})
        )
    );
    assert_eq!(
        action.summary(),
        "ops DELETE /clusters/{name} [RETURN_CONTROL]"
    );

    // A function call (no request body), as the simulator's agents make them, and a finish.
    let function = orch(OrchestrationTrace::InvocationInput(
        InvocationInput::builder()
            .trace_id("i-1")
            .invocation_type(InvocationType::ActionGroup)
            .action_group_invocation_input(
                ActionGroupInvocationInput::builder()
                    .action_group_name("payments \"eu\"")
                    .function("send_payment")
                    .parameters(param("amount", "number", "250"))
                    .parameters(param("to", "string", "acct-7\u{202e}"))
                    .execution_type(ExecutionType::ReturnControl)
                    .invocation_id("inv-3")
                    .build(),
            )
            .build(),
    ));
    let StepEvent::InvocationInput(i) = step(&function).1 else {
        panic!()
    };
    let InvocationDetail::ActionGroup {
        function: Some(f),
        parameters,
        ..
    } = &i.detail
    else {
        panic!("{:?}", i.detail)
    };
    assert_eq!((f.as_str(), parameters.len()), ("send_payment", 2));
    orch(OrchestrationTrace::InvocationInput(
        InvocationInput::builder()
            .trace_id("i-2")
            .invocation_type(InvocationType::Finish)
            .build(),
    ));
    orch(OrchestrationTrace::InvocationInput(
        InvocationInput::builder().build(),
    ));

    let kb = orch(OrchestrationTrace::InvocationInput(
        InvocationInput::builder()
            .invocation_type(InvocationType::KnowledgeBase)
            .knowledge_base_lookup_input(
                KnowledgeBaseLookupInput::builder()
                    .text("refund policy")
                    .knowledge_base_id("KB1")
                    .build(),
            )
            .build(),
    ));
    assert!(matches!(
        &step(&kb).1,
        StepEvent::InvocationInput(i) if i.detail == InvocationDetail::KnowledgeBase {
            knowledge_base_id: Some("KB1".into()), text: Some("refund policy".into()) }
    ));

    let code = orch(OrchestrationTrace::InvocationInput(
        InvocationInput::builder()
            .invocation_type(InvocationType::ActionGroupCodeInterpreter)
            .code_interpreter_invocation_input(
                CodeInterpreterInvocationInput::builder()
                    .code("print(1)")
                    .files("data.csv")
                    .build(),
            )
            .build(),
    ));
    assert!(matches!(
        &step(&code).1,
        StepEvent::InvocationInput(i) if i.detail == InvocationDetail::CodeInterpreter {
            code: Some("print(1)".into()), files: vec!["data.csv".into()] }
    ));

    let collab = map(Trace::RoutingClassifierTrace(
        RoutingClassifierTrace::InvocationInput(
            InvocationInput::builder()
                .invocation_type(InvocationType::AgentCollaborator)
                .agent_collaborator_invocation_input(
                    AgentCollaboratorInvocationInput::builder()
                        .agent_collaborator_name("payments")
                        .agent_collaborator_alias_arn("arn:alias/PAY/PROD")
                        .input(
                            AgentCollaboratorInputPayload::builder()
                                .r#type(PayloadType::Text)
                                .text("pay 5000")
                                .build(),
                        )
                        .build(),
                )
                .build(),
        ),
    ));
    let (phase, ev) = step(&collab);
    assert_eq!(phase, Phase::RoutingClassifier);
    assert!(matches!(
        ev,
        StepEvent::InvocationInput(i) if i.detail == InvocationDetail::AgentCollaborator {
            name: Some("payments".into()), alias_arn: Some("arn:alias/PAY/PROD".into()),
            text: Some("pay 5000".into()), returns_control_results: false }
    ));

    let finish = orch(OrchestrationTrace::InvocationInput(
        InvocationInput::builder()
            .invocation_type(InvocationType::Finish)
            .build(),
    ));
    assert!(matches!(
        &step(&finish).1,
        StepEvent::InvocationInput(i) if i.detail == InvocationDetail::Finish
    ));
}

fn obs(b: aws_sdk_bedrockagentruntime::types::builders::ObservationBuilder) -> TraceEvent {
    orch(OrchestrationTrace::Observation(b.trace_id("ob-0").build()))
}

fn detail(e: &TraceEvent) -> (Option<String>, ObservationDetail) {
    match step(e).1 {
        StepEvent::Observation(o) => (o.observation_type.clone(), o.detail.clone()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn observations_of_every_type() {
    let m = Metadata::builder().total_time_ms(40).build();
    let action = obs(Observation::builder()
        .r#type(Type::ActionGroup)
        .action_group_invocation_output(
            ActionGroupInvocationOutput::builder()
                .text("{\"ok\":true}")
                .metadata(m.clone())
                .build(),
        ));
    assert_eq!(
        detail(&action),
        (
            Some("ACTION_GROUP".into()),
            ObservationDetail::ActionGroup {
                text: Some("{\"ok\":true}".into()),
                metadata: Some(agentdeck::domain::trace::Metadata {
                    total_time_ms: Some(40),
                    ..Default::default()
                })
            }
        )
    );

    let mut doc_meta = HashMap::new();
    doc_meta.insert(
        "page".to_owned(),
        aws_smithy_types::Document::Number(aws_smithy_types::Number::PosInt(4)),
    );
    let kb = obs(Observation::builder()
        .r#type(Type::KnowledgeBase)
        .knowledge_base_lookup_output(
            KnowledgeBaseLookupOutput::builder()
                .retrieved_references(
                    RetrievedReference::builder()
                        .content(
                            RetrievalResultContent::builder()
                                .text("Refunds within 30 days.")
                                .build(),
                        )
                        .location(
                            RetrievalResultLocation::builder()
                                .r#type(RetrievalResultLocationType::S3)
                                .s3_location(
                                    RetrievalResultS3Location::builder()
                                        .uri("s3://kb/policy.pdf")
                                        .build(),
                                )
                                .build()
                                .unwrap(),
                        )
                        .set_metadata(Some(doc_meta))
                        .build(),
                )
                .build(),
        ));
    let (_, d) = detail(&kb);
    assert_eq!(
        d,
        ObservationDetail::KnowledgeBase {
            references: vec![agentdeck::domain::trace::Reference {
                content: Some("Refunds within 30 days.".into()),
                location_type: Some("S3".into()),
                location: Some("s3://kb/policy.pdf".into()),
            }],
            metadata: None
        }
    );
    assert_eq!(
        kb.raw.value()["trace"]["orchestrationTrace"]["observation"]["knowledgeBaseLookupOutput"]["retrievedReferences"]
            [0]["metadata"],
        json!({"page": 4})
    );

    let fin = obs(Observation::builder().r#type(Type::Finish).final_response(
        FinalResponse::builder()
            .text("Done.")
            .metadata(Metadata::builder().operation_total_time_ms(2400).build())
            .build(),
    ));
    let (text, m2) = fin.final_response().unwrap();
    assert_eq!(text, "Done.");
    assert_eq!(m2.unwrap().operation_total_time_ms, Some(2400));

    let reprompt = obs(Observation::builder()
        .r#type(Type::Reprompt)
        .reprompt_response(
            RepromptResponse::builder()
                .text("try again")
                .source(Source::Parser)
                .build(),
        ));
    assert_eq!(
        detail(&reprompt).1,
        ObservationDetail::Reprompt {
            text: Some("try again".into()),
            source: Some("PARSER".into())
        }
    );

    let code = obs(Observation::builder().code_interpreter_invocation_output(
        CodeInterpreterInvocationOutput::builder()
            .execution_output("1")
            .execution_error("")
            .files("out.png")
            .execution_timeout(false)
            .build(),
    ));
    assert!(matches!(
        detail(&code).1,
        ObservationDetail::CodeInterpreter { output: Some(o), files, timed_out: Some(false), .. }
            if o == "1" && files == vec!["out.png".to_owned()]
    ));

    let rc = ReturnControlPayload::builder()
        .invocation_id("inv-c")
        .build();
    let collab = obs(Observation::builder()
        .r#type(Type::AgentCollaborator)
        .agent_collaborator_invocation_output(
            AgentCollaboratorInvocationOutput::builder()
                .agent_collaborator_name("payments")
                .output(
                    AgentCollaboratorOutputPayload::builder()
                        .r#type(PayloadType::ReturnControl)
                        .return_control_payload(rc)
                        .build(),
                )
                .build(),
        ));
    assert!(matches!(
        detail(&collab).1,
        ObservationDetail::AgentCollaborator { name: Some(n), return_control_invocation_id: Some(i), .. }
            if n == "payments" && i == "inv-c"
    ));

    let ask = obs(Observation::builder().r#type(Type::AskUser));
    assert_eq!(
        detail(&ask),
        (Some("ASK_USER".into()), ObservationDetail::Bare)
    );
}

#[test]
fn failure_custom_orchestration_and_unknown_variants() {
    let f = map(Trace::FailureTrace(
        FailureTrace::builder()
            .trace_id("f-0")
            .failure_reason("Lambda timed out")
            .failure_code(424)
            .build(),
    ));
    assert_eq!(
        f.kind,
        TraceKind::Failure {
            trace_id: Some("f-0".into()),
            reason: Some("Lambda timed out".into()),
            code: Some(424),
            metadata: None
        }
    );
    assert_eq!(f.summary(), "[424] Lambda timed out");

    let c = map(Trace::CustomOrchestrationTrace(
        CustomOrchestrationTrace::builder()
            .trace_id("c-0")
            .event(
                CustomOrchestrationTraceEvent::builder()
                    .text("step 1")
                    .build(),
            )
            .build(),
    ));
    assert_eq!(
        c.kind,
        TraceKind::CustomOrchestration {
            trace_id: Some("c-0".into()),
            text: Some("step 1".into())
        }
    );

    // What the SDK could not name reaches the mapping as an empty union (the SDK's `Unknown`
    // variants cannot be built outside it; `runner_loopback` feeds them through the decoder):
    // it is kept as an Unknown event with no traceId.
    let u = TraceEvent::from_wire(json!({"trace": {}}));
    assert_eq!(u.kind, TraceKind::Unknown { key: None });
    assert_eq!(u.step_key(), "");
    let u = TraceEvent::from_wire(json!({"trace": {"orchestrationTrace": {}}}));
    assert_eq!(
        u.kind,
        TraceKind::Step {
            phase: Phase::Orchestration,
            event: StepEvent::Unknown { key: None }
        }
    );
    // A variant added on the wire later, read from stored JSON, is named.
    let later = TraceEvent::from_wire(json!({"trace": {"memoryTrace": {"traceId": "x"}}}));
    assert_eq!(
        later.kind,
        TraceKind::Unknown {
            key: Some("memoryTrace".into())
        }
    );
    assert_eq!(later.kind_name(), "unknown(memoryTrace)");
    // Nonsense never panics.
    for v in [
        json!(null),
        json!([1]),
        json!({"trace": 5}),
        json!({"eventTime": 7}),
    ] {
        let e = TraceEvent::from_wire(v);
        assert!(e.event_time.is_none());
    }
}

#[test]
fn return_control_payloads_become_the_submission_shape() {
    let rc = ReturnControlPayload::builder()
        .invocation_id("inv-1")
        .invocation_inputs(InvocationInputMember::FunctionInvocationInput(
            FunctionInvocationInput::builder()
                .action_group("payments")
                .function("transferFunds")
                .parameters(
                    FunctionParameter::builder()
                        .name("amount")
                        .r#type("number")
                        .value("5000")
                        .build(),
                )
                .action_invocation_type(ActionInvocationType::UserConfirmation)
                .agent_id("PAYAGENT01")
                .collaborator_name("payments")
                .build()
                .unwrap(),
        ))
        .invocation_inputs(InvocationInputMember::ApiInvocationInput(
            ApiInvocationInput::builder()
                .action_group("ops")
                .http_method("DELETE")
                .api_path("/clusters/{name}")
                .parameters(
                    ApiParameter::builder()
                        .name("name")
                        .r#type("string")
                        .value("blue")
                        .build(),
                )
                .request_body(
                    ApiRequestBody::builder()
                        .content(
                            "application/json",
                            PropertyParameters::builder()
                                .properties(param("force", "boolean", "true"))
                                .build(),
                        )
                        .build(),
                )
                .action_invocation_type(ActionInvocationType::UserConfirmationAndResult)
                .build()
                .unwrap(),
        ))
        .build();
    assert_eq!(
        wire::return_control(&rc),
        json!({"invocationId": "inv-1", "invocationInputs": [
            {"functionInvocationInput": {"actionGroup": "payments", "function": "transferFunds",
                "parameters": [{"name": "amount", "type": "number", "value": "5000"}],
                "actionInvocationType": "USER_CONFIRMATION", "agentId": "PAYAGENT01",
                "collaboratorName": "payments"}},
            {"apiInvocationInput": {"actionGroup": "ops", "httpMethod": "DELETE",
                "apiPath": "/clusters/{name}",
                "parameters": [{"name": "name", "type": "string", "value": "blue"}],
                "requestBody": {"content": {"application/json": {"properties": [
                    {"name": "force", "type": "boolean", "value": "true"}]}}},
                "actionInvocationType": "USER_CONFIRMATION_AND_RESULT"}}
        ]})
    );
}

#[test]
fn chunks_are_text_and_invalid_utf8_is_replaced() {
    let p = PayloadPart::builder()
        .bytes(aws_smithy_types::Blob::new(b"caf\xc3\xa9 \xff".to_vec()))
        .build();
    assert_eq!(wire::chunk_text(&p), "café \u{fffd}");
}

#[test]
fn raw_json_text_escapes_as_serde_json_does() {
    // Quotes, backslashes, every control character, DEL, non-ASCII and an emoji.
    let mut text: String = (0_u8..0x20).map(char::from).collect();
    text.push_str("\"q\" \\ / \u{7f} é ✓ 😀 </script>");
    let e = orch(OrchestrationTrace::Rationale(
        Rationale::builder().trace_id("t-1").text(&text).build(),
    ));
    assert_eq!(e.rationale(), Some(text.as_str()));
    // A part with nothing set but the envelope's time, and one with nothing at all.
    mapped(
        &TracePart::builder()
            .event_time(t("1970-01-01T00:00:00Z"))
            .build(),
    );
    let bare = mapped(&TracePart::builder().build());
    assert!(matches!(bare.kind, TraceKind::Unknown { key: None }));
}
