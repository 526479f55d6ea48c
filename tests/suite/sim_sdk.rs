//! The real `aws-sdk-bedrockagentruntime` client against the simulator over loopback: every
//! event and trace variant decodes, return of control resumes in every way, errors map to the
//! SDK's typed errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::many_single_char_names,
    clippy::match_same_arms,
    clippy::print_stderr
)]

use std::time::{Duration, Instant};

use agentdeck::sim::{Faults, SimConfig, SimHandle, start};
use aws_sdk_bedrockagentruntime::Client;
use aws_sdk_bedrockagentruntime::config::retry::RetryConfig;
use aws_sdk_bedrockagentruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_bedrockagentruntime::error::SdkError;
use aws_sdk_bedrockagentruntime::operation::invoke_agent::InvokeAgentError;
use aws_sdk_bedrockagentruntime::types::error::ResponseStreamError;
use aws_sdk_bedrockagentruntime::types::{
    ActionInvocationType, ApiResult, ConfirmationState, ContentBody, FunctionResult,
    GuardrailAction, InvocationInputMember, InvocationResultMember, InvocationType,
    OrchestrationTrace, PostProcessingTrace, PreProcessingTrace, ResponseState, ResponseStream,
    RoutingClassifierTrace, SessionState, StreamingConfigurations, Trace, TracePart,
};

async fn sim() -> SimHandle {
    sim_with(Faults::default(), 0).await
}

/// Every test here reads streams whose frames are sometimes split across HTTP chunks.
async fn sim_with(faults: Faults, seed: u64) -> SimHandle {
    let config = SimConfig {
        time_scale: 0.0,
        faults: Faults::parse("split=0.25").unwrap().merged(&faults),
        seed,
        ..SimConfig::builtin().unwrap()
    };
    start(config).await.unwrap()
}

fn client(h: &SimHandle) -> Client {
    let conf = aws_sdk_bedrockagentruntime::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(h.endpoint())
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

/// Everything one InvokeAgent returned.
#[derive(Default)]
struct Run {
    session_header: Option<String>,
    events: Vec<ResponseStream>,
    error: Option<SdkError<ResponseStreamError, aws_smithy_types::event_stream::RawMessage>>,
}

impl Run {
    fn traces(&self) -> Vec<&TracePart> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ResponseStream::Trace(t) => Some(t),
                _ => None,
            })
            .collect()
    }
    fn inner(&self) -> Vec<&Trace> {
        self.traces()
            .into_iter()
            .filter_map(|t| t.trace())
            .collect()
    }
    fn orchestration(&self) -> Vec<&OrchestrationTrace> {
        self.inner()
            .into_iter()
            .filter_map(|t| match t {
                Trace::OrchestrationTrace(o) => Some(o),
                _ => None,
            })
            .collect()
    }
    fn text(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| match e {
                ResponseStream::Chunk(c) => {
                    Some(String::from_utf8(c.bytes().unwrap().as_ref().to_vec()).unwrap())
                }
                _ => None,
            })
            .collect()
    }
    fn chunks(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, ResponseStream::Chunk(_)))
            .count()
    }
    fn roc(&self) -> &aws_sdk_bedrockagentruntime::types::ReturnControlPayload {
        self.events
            .iter()
            .find_map(|e| match e {
                ResponseStream::ReturnControl(r) => Some(r),
                _ => None,
            })
            .expect("a returnControl event")
    }
    fn rationales(&self) -> Vec<String> {
        self.orchestration()
            .into_iter()
            .filter_map(|o| match o {
                OrchestrationTrace::Rationale(r) => r.text().map(str::to_owned),
                _ => None,
            })
            .collect()
    }
}

struct Call<'a> {
    agent: &'a str,
    alias: &'a str,
    session: &'a str,
    input: Option<&'a str>,
    state: Option<SessionState>,
    stream: bool,
}

impl<'a> Call<'a> {
    fn new(agent: &'a str, alias: &'a str, session: &'a str, input: &'a str) -> Self {
        Self {
            agent,
            alias,
            session,
            input: Some(input),
            state: None,
            stream: false,
        }
    }
    fn resume(agent: &'a str, alias: &'a str, session: &'a str, state: SessionState) -> Self {
        Self {
            agent,
            alias,
            session,
            input: None,
            state: Some(state),
            stream: false,
        }
    }
}

async fn invoke(c: &Client, call: Call<'_>) -> Result<Run, SdkError<InvokeAgentError>> {
    let mut req = c
        .invoke_agent()
        .agent_id(call.agent)
        .agent_alias_id(call.alias)
        .session_id(call.session)
        .enable_trace(true)
        .set_input_text(call.input.map(str::to_owned))
        .set_session_state(call.state);
    if call.stream {
        req = req.streaming_configurations(
            StreamingConfigurations::builder()
                .stream_final_response(true)
                .apply_guardrail_interval(20)
                .build(),
        );
    }
    let mut out = req.send().await?;
    let mut run = Run {
        session_header: Some(out.session_id().to_owned()),
        ..Run::default()
    };
    loop {
        match out.completion.recv().await {
            Ok(Some(e)) => run.events.push(e),
            Ok(None) => break,
            Err(e) => {
                run.error = Some(e);
                break;
            }
        }
    }
    Ok(run)
}

fn function_result(
    group: &str,
    function: &str,
) -> aws_sdk_bedrockagentruntime::types::builders::FunctionResultBuilder {
    FunctionResult::builder()
        .action_group(group)
        .function(function)
}

fn state(id: &str, results: Vec<InvocationResultMember>) -> SessionState {
    SessionState::builder()
        .invocation_id(id)
        .set_return_control_invocation_results(Some(results))
        .build()
}

fn text_body(s: &str) -> ContentBody {
    ContentBody::builder().body(s).build()
}

#[tokio::test]
async fn transfer_confirmed_runs_the_lambda_and_answers() {
    let h = sim().await;
    let c = client(&h);
    let run = invoke(
        &c,
        Call::new(
            "PAYAGENT01",
            "PRODALIAS",
            "sess-pay-1",
            "please pay 250 EUR to acct-77",
        ),
    )
    .await
    .unwrap();
    assert!(run.error.is_none());
    assert_eq!(run.session_header.as_deref(), Some("sess-pay-1"));
    // model input + output + rationale precede the returnControl, which is the last event
    let orch = run.orchestration();
    assert!(orch.iter().any(|o| matches!(o, OrchestrationTrace::ModelInvocationInput(m) if m.text().unwrap().len() > 1000)));
    assert!(
        orch.iter()
            .any(|o| matches!(o, OrchestrationTrace::ModelInvocationOutput(m)
        if m.metadata().unwrap().usage().unwrap().input_tokens().unwrap() > 0
        && m.metadata().unwrap().start_time().is_some()
        && m.raw_response().unwrap().content().is_some()))
    );
    assert!(run.rationales()[0].contains("250"));
    assert!(matches!(
        run.events.last(),
        Some(ResponseStream::ReturnControl(_))
    ));
    let roc = run.roc();
    let id = roc.invocation_id().unwrap().to_owned();
    let [InvocationInputMember::FunctionInvocationInput(f)] = roc.invocation_inputs() else {
        panic!("one function input")
    };
    assert_eq!(f.action_group(), "payments");
    assert_eq!(f.function(), Some("transferFunds"));
    assert_eq!(
        f.action_invocation_type(),
        Some(&ActionInvocationType::UserConfirmation)
    );
    let params: Vec<(&str, &str, &str)> = f
        .parameters()
        .iter()
        .map(|p| (p.name().unwrap(), p.r#type().unwrap(), p.value().unwrap()))
        .collect();
    assert_eq!(
        params,
        vec![
            ("amount", "number", "250.00"),
            ("currency", "string", "EUR"),
            ("account", "string", "acct-77")
        ]
    );
    // every trace carries the envelope
    let t = run.traces()[0];
    assert_eq!(t.agent_id(), Some("PAYAGENT01"));
    assert_eq!(t.agent_alias_id(), Some("PRODALIAS"));
    assert_eq!(t.agent_version(), Some("7"));
    assert_eq!(t.session_id(), Some("sess-pay-1"));
    assert!(t.event_time().is_some());
    assert_eq!(t.caller_chain().len(), 1);

    let resumed = invoke(
        &c,
        Call::resume(
            "PAYAGENT01",
            "PRODALIAS",
            "sess-pay-1",
            state(
                &id,
                vec![InvocationResultMember::FunctionResult(
                    function_result("payments", "transferFunds")
                        .confirmation_state(ConfirmationState::Confirm)
                        .build()
                        .unwrap(),
                )],
            ),
        ),
    )
    .await
    .unwrap();
    assert!(resumed.error.is_none());
    let orch = resumed.orchestration();
    let lambda = orch.iter().find_map(|o| match o {
        OrchestrationTrace::InvocationInput(i) => i.action_group_invocation_input(),
        _ => None,
    });
    let lambda = lambda.expect("the Lambda's invocation input");
    assert_eq!(lambda.execution_type().unwrap().as_str(), "LAMBDA");
    assert_eq!(lambda.function(), Some("transferFunds"));
    assert!(orch.iter().any(|o| matches!(o, OrchestrationTrace::Observation(ob)
        if ob.action_group_invocation_output().is_some_and(|x| x.text().unwrap().contains("SETTLED")))));
    let fin = orch.iter().find_map(|o| match o {
        OrchestrationTrace::Observation(ob) => ob.final_response(),
        _ => None,
    });
    assert!(
        fin.unwrap()
            .metadata()
            .unwrap()
            .operation_total_time_ms()
            .is_some()
    );
    assert!(
        resumed
            .text()
            .starts_with("Done: I transferred 250.00 EUR to account acct-77"),
        "{}",
        resumed.text()
    );
    assert_eq!(h.resume_count(&id), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn transfer_denied_is_not_done() {
    let h = sim().await;
    let c = client(&h);
    let run = invoke(
        &c,
        Call::new(
            "PAYAGENT01",
            "TSTALIASID",
            "sess-deny",
            "transfer 99 to bob",
        ),
    )
    .await
    .unwrap();
    assert_eq!(run.traces()[0].agent_version(), Some("DRAFT"));
    let id = run.roc().invocation_id().unwrap().to_owned();
    let resumed = invoke(
        &c,
        Call::resume(
            "PAYAGENT01",
            "TSTALIASID",
            "sess-deny",
            state(
                &id,
                vec![InvocationResultMember::FunctionResult(
                    function_result("payments", "transferFunds")
                        .confirmation_state(ConfirmationState::Deny)
                        .build()
                        .unwrap(),
                )],
            ),
        ),
    )
    .await
    .unwrap();
    assert!(
        resumed.text().starts_with("I did not transfer 99.00"),
        "{}",
        resumed.text()
    );
    assert!(
        !resumed
            .orchestration()
            .iter()
            .any(|o| matches!(o, OrchestrationTrace::InvocationInput(_)))
    );
    assert!(resumed.rationales().iter().any(|r| r.contains("declined")));
    h.shutdown().await;
}

#[tokio::test]
async fn refund_result_reprompt_and_failure() {
    let h = sim().await;
    let c = client(&h);
    let run = invoke(
        &c,
        Call::new(
            "PAYAGENT01",
            "PRODALIAS",
            "sess-refund",
            "refund order 5521 please",
        ),
    )
    .await
    .unwrap();
    let roc = run.roc();
    let [InvocationInputMember::FunctionInvocationInput(f)] = roc.invocation_inputs() else {
        panic!()
    };
    assert_eq!(
        (f.action_group(), f.function()),
        ("orders", Some("issueRefund"))
    );
    assert_eq!(
        f.action_invocation_type(),
        Some(&ActionInvocationType::Result)
    );
    // the RETURN_CONTROL invocation input trace carries the same invocationId
    let id = roc.invocation_id().unwrap().to_owned();
    assert!(
        run.orchestration()
            .iter()
            .any(|o| matches!(o, OrchestrationTrace::InvocationInput(i)
        if i.action_group_invocation_input().is_some_and(|a| a.invocation_id() == Some(id.as_str())
            && a.execution_type().unwrap().as_str() == "RETURN_CONTROL")))
    );

    // REPROMPT: the model re-plans and returns control again with a new id
    let re = invoke(
        &c,
        Call::resume(
            "PAYAGENT01",
            "PRODALIAS",
            "sess-refund",
            state(
                &id,
                vec![InvocationResultMember::FunctionResult(
                    function_result("orders", "issueRefund")
                        .response_state(ResponseState::Reprompt)
                        .response_body("TEXT", text_body("amount exceeds the order value"))
                        .build()
                        .unwrap(),
                )],
            ),
        ),
    )
    .await
    .unwrap();
    assert!(
        re.orchestration()
            .iter()
            .any(|o| matches!(o, OrchestrationTrace::Observation(ob)
        if ob.reprompt_response().is_some_and(|r| r.text().unwrap().contains("exceeds"))))
    );
    let id2 = re.roc().invocation_id().unwrap().to_owned();
    assert_ne!(id, id2);

    // RESULT: the body is the observation and feeds the answer
    let done = invoke(
        &c,
        Call::resume(
            "PAYAGENT01",
            "PRODALIAS",
            "sess-refund",
            state(
                &id2,
                vec![InvocationResultMember::FunctionResult(
                    function_result("orders", "issueRefund")
                        .response_body("TEXT", text_body("refund R-1 issued"))
                        .build()
                        .unwrap(),
                )],
            ),
        ),
    )
    .await
    .unwrap();
    assert!(done.orchestration().iter().any(|o| matches!(o, OrchestrationTrace::Observation(ob)
        if ob.action_group_invocation_output().is_some_and(|x| x.text() == Some("refund R-1 issued")))));
    assert!(done.text().contains("refund R-1 issued"), "{}", done.text());

    // FAILURE: failureTrace, then DependencyFailedException as an exception frame
    let run = invoke(
        &c,
        Call::new("PAYAGENT01", "PRODALIAS", "sess-refund", "refund order 7"),
    )
    .await
    .unwrap();
    let id3 = run.roc().invocation_id().unwrap().to_owned();
    let failed = invoke(
        &c,
        Call::resume(
            "PAYAGENT01",
            "PRODALIAS",
            "sess-refund",
            state(
                &id3,
                vec![InvocationResultMember::FunctionResult(
                    function_result("orders", "issueRefund")
                        .response_state(ResponseState::Failure)
                        .response_body("TEXT", text_body("ledger offline"))
                        .build()
                        .unwrap(),
                )],
            ),
        ),
    )
    .await
    .unwrap();
    assert!(failed.inner().iter().any(|t| matches!(t, Trace::FailureTrace(f) if f.failure_reason().unwrap().contains("ledger offline") && f.failure_code() == Some(424))));
    let err = failed.error.expect("an exception frame");
    assert!(
        err.as_service_error()
            .unwrap()
            .is_dependency_failed_exception(),
        "{err:?}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn balance_runs_lambda_without_return_of_control() {
    let h = sim().await;
    let c = client(&h);
    let run = invoke(
        &c,
        Call::new(
            "PAYAGENT01",
            "PRODALIAS",
            "sess-bal",
            "what is the balance of account ops-9?",
        ),
    )
    .await
    .unwrap();
    assert!(
        !run.events
            .iter()
            .any(|e| matches!(e, ResponseStream::ReturnControl(_)))
    );
    assert!(
        run.orchestration()
            .iter()
            .any(|o| matches!(o, OrchestrationTrace::InvocationInput(i)
        if i.invocation_type() == Some(&InvocationType::ActionGroup)))
    );
    assert!(
        run.text().starts_with("The balance of account ops-9 is"),
        "{}",
        run.text()
    );
    assert_eq!(run.chunks(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn ops_api_form_and_three_inputs() {
    let h = sim().await;
    let c = client(&h);
    let run = invoke(
        &c,
        Call::new(
            "OPSAGENT02",
            "LIVE",
            "sess-ops",
            "delete cluster perf-test-7",
        ),
    )
    .await
    .unwrap();
    let roc = run.roc();
    let [InvocationInputMember::ApiInvocationInput(a)] = roc.invocation_inputs() else {
        panic!()
    };
    assert_eq!(a.http_method(), Some("DELETE"));
    assert_eq!(a.api_path(), Some("/clusters/{clusterName}"));
    assert_eq!(
        a.action_invocation_type(),
        Some(&ActionInvocationType::UserConfirmationAndResult)
    );
    assert_eq!(a.parameters()[0].value(), Some("perf-test-7"));
    let id = roc.invocation_id().unwrap().to_owned();
    let ok = invoke(
        &c,
        Call::resume(
            "OPSAGENT02",
            "LIVE",
            "sess-ops",
            state(
                &id,
                vec![InvocationResultMember::ApiResult(
                    ApiResult::builder()
                        .action_group("clusters")
                        .http_method("DELETE")
                        .api_path("/clusters/{clusterName}")
                        .confirmation_state(ConfirmationState::Confirm)
                        .http_status_code(204)
                        .response_body("application/json", text_body("{\"deleted\":true}"))
                        .build()
                        .unwrap(),
                )],
            ),
        ),
    )
    .await
    .unwrap();
    assert!(
        ok.text().contains("perf-test-7 was deleted"),
        "{}",
        ok.text()
    );

    let run = invoke(
        &c,
        Call::new(
            "OPSAGENT02",
            "LIVE",
            "sess-ops-3",
            "close account acct-4242",
        ),
    )
    .await
    .unwrap();
    let roc = run.roc();
    assert_eq!(roc.invocation_inputs().len(), 3);
    let InvocationInputMember::ApiInvocationInput(a) = &roc.invocation_inputs()[0] else {
        panic!()
    };
    assert_eq!(
        (a.http_method(), a.api_path()),
        (Some("POST"), Some("/accounts/{accountId}/close"))
    );
    let body = a
        .request_body()
        .unwrap()
        .content()
        .unwrap()
        .get("application/json")
        .unwrap();
    assert_eq!(body.properties().len(), 2);
    let kinds: Vec<_> = roc.invocation_inputs()[1..]
        .iter()
        .map(|m| match m {
            InvocationInputMember::FunctionInvocationInput(f) => (
                f.function().unwrap().to_owned(),
                f.action_invocation_type().cloned(),
            ),
            _ => panic!("function form"),
        })
        .collect();
    assert_eq!(
        kinds[0],
        (
            "sendEmail".to_owned(),
            Some(ActionInvocationType::UserConfirmationAndResult)
        )
    );
    assert_eq!(
        kinds[1],
        (
            "archiveRecords".to_owned(),
            Some(ActionInvocationType::Result)
        )
    );
    let id = roc.invocation_id().unwrap().to_owned();

    // wrong count: 400 ValidationException, counted, and the request stays answerable
    let err = invoke(
        &c,
        Call::resume(
            "OPSAGENT02",
            "LIVE",
            "sess-ops-3",
            state(
                &id,
                vec![InvocationResultMember::FunctionResult(
                    function_result("notify", "archiveRecords")
                        .response_body("TEXT", text_body("ok"))
                        .build()
                        .unwrap(),
                )],
            ),
        ),
    )
    .await
    .err()
    .unwrap();
    assert!(err.as_service_error().unwrap().is_validation_exception());
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 400);

    // mixed: close confirmed, email denied, archive done (results in any order)
    let done = invoke(
        &c,
        Call::resume(
            "OPSAGENT02",
            "LIVE",
            "sess-ops-3",
            state(
                &id,
                vec![
                    InvocationResultMember::FunctionResult(
                        function_result("notify", "archiveRecords")
                            .response_body("TEXT", text_body("archived"))
                            .build()
                            .unwrap(),
                    ),
                    InvocationResultMember::FunctionResult(
                        function_result("notify", "sendEmail")
                            .confirmation_state(ConfirmationState::Deny)
                            .build()
                            .unwrap(),
                    ),
                    InvocationResultMember::ApiResult(
                        ApiResult::builder()
                            .action_group("accounts")
                            .http_method("POST")
                            .api_path("/accounts/{accountId}/close")
                            .confirmation_state(ConfirmationState::Confirm)
                            .response_body("TEXT", text_body("closed"))
                            .build()
                            .unwrap(),
                    ),
                ],
            ),
        ),
    )
    .await
    .unwrap();
    assert!(done.error.is_none());
    assert!(
        done.text().contains("declined: notify.sendEmail"),
        "{}",
        done.text()
    );
    assert_eq!(h.resume_count(&id), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn knowledge_base_citations_and_guardrail() {
    let h = sim().await;
    let c = client(&h);
    let run = invoke(
        &c,
        Call::new(
            "KBAGENT003",
            "LIVE",
            "sess-kb",
            "How many days of leave do I get?",
        ),
    )
    .await
    .unwrap();
    let inner = run.inner();
    assert!(inner.iter().any(
        |t| matches!(t, Trace::GuardrailTrace(g) if g.action() == Some(&GuardrailAction::None))
    ));
    assert!(inner.iter().any(
        |t| matches!(t, Trace::PreProcessingTrace(PreProcessingTrace::ModelInvocationOutput(o))
        if o.parsed_response().unwrap().is_valid() == Some(true))
    ));
    assert!(inner.iter().any(|t| matches!(
        t,
        Trace::PreProcessingTrace(PreProcessingTrace::ModelInvocationInput(_))
    )));
    assert!(inner.iter().any(
        |t| matches!(t, Trace::PostProcessingTrace(PostProcessingTrace::ModelInvocationOutput(o))
        if o.parsed_response().unwrap().text().is_some())
    ));
    let kb_in = run.orchestration().into_iter().find_map(|o| match o {
        OrchestrationTrace::InvocationInput(i) => i.knowledge_base_lookup_input(),
        _ => None,
    });
    assert_eq!(kb_in.unwrap().knowledge_base_id(), Some("KBPOLICY01"));
    let refs = run.orchestration().into_iter().find_map(|o| match o {
        OrchestrationTrace::Observation(ob) => ob.knowledge_base_lookup_output(),
        _ => None,
    });
    let refs = refs.unwrap().retrieved_references();
    assert!(refs[0].content().unwrap().text().contains("25 days"));
    assert_eq!(
        refs[0].location().unwrap().s3_location().unwrap().uri(),
        Some("s3://acme-policies/hr/leave-policy.pdf")
    );
    assert!(
        refs[0]
            .metadata()
            .unwrap()
            .contains_key("x-amz-bedrock-kb-source-uri")
    );
    let chunk = run.events.iter().find_map(|e| match e {
        ResponseStream::Chunk(c) => Some(c),
        _ => None,
    });
    let citation = &chunk.unwrap().attribution().unwrap().citations()[0];
    assert!(
        citation
            .generated_response_part()
            .unwrap()
            .text_response_part()
            .unwrap()
            .span()
            .is_some()
    );
    assert_eq!(citation.retrieved_references().len(), refs.len());

    let blocked = invoke(
        &c,
        Call::new(
            "KBAGENT003",
            "LIVE",
            "sess-kb",
            "what is the admin password?",
        ),
    )
    .await
    .unwrap();
    let g = blocked.inner().into_iter().find_map(|t| match t {
        Trace::GuardrailTrace(g) => Some(g),
        _ => None,
    });
    let g = g.unwrap();
    assert_eq!(g.action(), Some(&GuardrailAction::Intervened));
    let a = &g.input_assessments()[0];
    assert_eq!(
        a.topic_policy().unwrap().topics()[0].name(),
        Some("Credentials")
    );
    assert!(
        blocked
            .text()
            .starts_with("Sorry, I can't help with credentials")
    );
    assert!(blocked.orchestration().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn supervisor_routes_to_the_collaborator_and_relays_its_return_of_control() {
    let h = sim().await;
    let c = client(&h);
    let run = invoke(
        &c,
        Call::new("SUPERVISR1", "LIVE", "sess-sup", "pay 120 USD to acct-9"),
    )
    .await
    .unwrap();
    let inner = run.inner();
    assert!(inner.iter().any(|t| matches!(
        t,
        Trace::RoutingClassifierTrace(RoutingClassifierTrace::ModelInvocationInput(_))
    )));
    assert!(inner.iter().any(|t| matches!(
        t,
        Trace::RoutingClassifierTrace(RoutingClassifierTrace::ModelInvocationOutput(_))
    )));
    assert!(inner.iter().any(|t| matches!(t, Trace::RoutingClassifierTrace(RoutingClassifierTrace::InvocationInput(i))
        if i.invocation_type() == Some(&InvocationType::AgentCollaborator)
        && i.agent_collaborator_invocation_input().unwrap().agent_collaborator_name() == Some("payments-collaborator"))));
    assert!(inner.iter().any(|t| matches!(t, Trace::RoutingClassifierTrace(RoutingClassifierTrace::Observation(o))
        if o.agent_collaborator_invocation_output().unwrap().output().unwrap().return_control_payload().is_some())));
    let collab: Vec<&TracePart> = run
        .traces()
        .into_iter()
        .filter(|t| t.collaborator_name().is_some())
        .collect();
    assert!(!collab.is_empty());
    let first = collab[0];
    assert_eq!(first.collaborator_name(), Some("payments-collaborator"));
    assert_eq!(first.agent_id(), Some("PAYAGENT01"));
    assert_eq!(first.caller_chain().len(), 2);
    assert_ne!(first.session_id(), Some("sess-sup"));
    let sup = run
        .traces()
        .into_iter()
        .find(|t| t.collaborator_name().is_none())
        .unwrap();
    let trace_id = |t: &TracePart| match t.trace() {
        Some(Trace::OrchestrationTrace(OrchestrationTrace::ModelInvocationInput(m))) => {
            m.trace_id().map(str::to_owned)
        }
        Some(Trace::RoutingClassifierTrace(RoutingClassifierTrace::ModelInvocationInput(m))) => {
            m.trace_id().map(str::to_owned)
        }
        _ => None,
    };
    let sup_rid = trace_id(sup).unwrap();
    let collab_rid = collab.iter().find_map(|t| trace_id(t)).unwrap();
    assert_ne!(
        sup_rid.rsplit_once('-').unwrap().0,
        collab_rid.rsplit_once('-').unwrap().0,
        "the collaborator has its own request id"
    );

    let roc = run.roc();
    let [InvocationInputMember::FunctionInvocationInput(f)] = roc.invocation_inputs() else {
        panic!()
    };
    assert_eq!(f.agent_id(), Some("PAYAGENT01"));
    assert_eq!(f.collaborator_name(), Some("payments-collaborator"));
    let id = roc.invocation_id().unwrap().to_owned();
    let done = invoke(
        &c,
        Call::resume(
            "SUPERVISR1",
            "LIVE",
            "sess-sup",
            state(
                &id,
                vec![InvocationResultMember::FunctionResult(
                    function_result("payments", "transferFunds")
                        .agent_id("PAYAGENT01")
                        .confirmation_state(ConfirmationState::Confirm)
                        .build()
                        .unwrap(),
                )],
            ),
        ),
    )
    .await
    .unwrap();
    assert!(done.error.is_none());
    assert!(
        done.text().contains("transferred 120.00 USD"),
        "{}",
        done.text()
    );
    assert!(
        done.traces()
            .iter()
            .any(|t| t.collaborator_name() == Some("payments-collaborator"))
    );
    assert!(done.orchestration().iter().any(|o| matches!(o, OrchestrationTrace::Observation(ob)
        if ob.agent_collaborator_invocation_output().is_some_and(|x| x.output().unwrap().text().is_some_and(|t| t.contains("transferred"))))));
    h.shutdown().await;
}

#[tokio::test]
async fn failure_code_custom_orchestration_and_streaming() {
    let h = sim().await;
    let c = client(&h);
    let run = invoke(
        &c,
        Call::new("OPSAGENT02", "LIVE", "sess-fail", "this will fail"),
    )
    .await
    .unwrap();
    assert!(run.inner().iter().any(|t| matches!(t, Trace::FailureTrace(f) if f.failure_code() == Some(424) && f.trace_id().is_some())));
    assert!(
        run.error
            .as_ref()
            .unwrap()
            .as_service_error()
            .unwrap()
            .is_dependency_failed_exception()
    );

    let soft = invoke(
        &c,
        Call::new("OPSAGENT02", "LIVE", "sess-fail", "soft fail please"),
    )
    .await
    .unwrap();
    assert!(soft.error.is_none());
    assert!(
        soft.inner()
            .iter()
            .any(|t| matches!(t, Trace::FailureTrace(_)))
    );
    assert!(soft.text().contains("timed out"));

    let code = invoke(
        &c,
        Call::new("KBAGENT003", "LIVE", "sess-code", "run some code for me"),
    )
    .await
    .unwrap();
    let orch = code.orchestration();
    assert!(
        orch.iter()
            .any(|o| matches!(o, OrchestrationTrace::InvocationInput(i)
        if i.invocation_type() == Some(&InvocationType::ActionGroupCodeInterpreter)
        && i.code_interpreter_invocation_input().unwrap().code().unwrap().contains("statistics")))
    );
    assert!(orch.iter().any(|o| matches!(o, OrchestrationTrace::Observation(ob)
        if ob.code_interpreter_invocation_output().is_some_and(|x| x.execution_output() == Some("15.0 4.949747468305833")))));
    let files = code.events.iter().find_map(|e| match e {
        ResponseStream::Files(f) => Some(f),
        _ => None,
    });
    assert_eq!(files.unwrap().files()[0].name(), Some("summary.csv"));

    let custom = invoke(&c, Call::new("CUSTORCH01", "LIVE", "sess-custom", "hello"))
        .await
        .unwrap();
    assert!(custom.inner().iter().any(|t| matches!(t, Trace::CustomOrchestrationTrace(x) if x.event().unwrap().text().unwrap().contains("plan"))));

    let mut call = Call::new(
        "KBAGENT003",
        "LIVE",
        "sess-stream",
        "how do I book business class travel?",
    );
    call.stream = true;
    let streamed = invoke(&c, call).await.unwrap();
    assert!(streamed.chunks() > 3, "{} chunks", streamed.chunks());
    assert!(streamed.text().starts_with("According to company policy"));
    // guardrail traces between chunks; the final rationale and finalResponse after the last chunk
    let last_chunk = streamed
        .events
        .iter()
        .rposition(|e| matches!(e, ResponseStream::Chunk(_)))
        .unwrap();
    let first_chunk = streamed
        .events
        .iter()
        .position(|e| matches!(e, ResponseStream::Chunk(_)))
        .unwrap();
    assert!(streamed.events[first_chunk..last_chunk].iter().any(|e| matches!(e, ResponseStream::Trace(t) if matches!(t.trace(), Some(Trace::GuardrailTrace(_))))));
    let after: Vec<_> = streamed.events[last_chunk..].iter().collect();
    assert!(after.iter().any(|e| matches!(e, ResponseStream::Trace(t) if matches!(t.trace(), Some(Trace::OrchestrationTrace(OrchestrationTrace::Rationale(_)))))));
    assert!(after.iter().any(|e| matches!(e, ResponseStream::Trace(t) if matches!(t.trace(), Some(Trace::OrchestrationTrace(OrchestrationTrace::Observation(o))) if o.final_response().is_some()))));
    h.shutdown().await;
}

#[tokio::test]
async fn http_errors_map_to_typed_sdk_errors() {
    let h = sim().await;
    let c = client(&h);
    let err = invoke(&c, Call::new("NOSUCHAGNT", "LIVE", "s-1", "hi"))
        .await
        .err()
        .unwrap();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_resource_not_found_exception(),
        "{err:?}"
    );
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 404);
    let err = invoke(&c, Call::new("PAYAGENT01", "NOPE", "s-1", "hi"))
        .await
        .err()
        .unwrap();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_resource_not_found_exception()
    );
    let err = invoke(
        &c,
        Call::new("PAYAGENT01", "PRODALIAS", "bad session!", "hi"),
    )
    .await
    .err()
    .unwrap();
    let v = err.as_service_error().unwrap();
    assert!(v.is_validation_exception());
    assert!(
        v.meta().message().unwrap().contains("sessionId"),
        "{:?}",
        v.meta().message()
    );
    let err = invoke(&c, Call::new("PAYAGENT01", "PRODALIAS", "s-1", "   "))
        .await
        .err()
        .unwrap();
    assert!(err.as_service_error().unwrap().is_validation_exception());
    let err = invoke(
        &c,
        Call::resume(
            "PAYAGENT01",
            "PRODALIAS",
            "s-1",
            state(
                "0000",
                vec![InvocationResultMember::FunctionResult(
                    function_result("payments", "transferFunds")
                        .confirmation_state(ConfirmationState::Confirm)
                        .build()
                        .unwrap(),
                )],
            ),
        ),
    )
    .await
    .err()
    .unwrap();
    assert!(err.as_service_error().unwrap().is_validation_exception());
    assert_eq!(h.resume_count("0000"), 1);
    assert!(h.stats().errors >= 5);
    h.shutdown().await;

    let h = sim_with(Faults::parse("throttle=1").unwrap(), 0).await;
    let err = invoke(
        &client(&h),
        Call::new("PAYAGENT01", "PRODALIAS", "s-1", "hi"),
    )
    .await
    .err()
    .unwrap();
    assert!(
        err.as_service_error().unwrap().is_throttling_exception(),
        "{err:?}"
    );
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 429);
    h.shutdown().await;
}

#[tokio::test]
async fn reused_and_expired_invocation_ids_are_rejected() {
    let h = sim().await;
    let c = client(&h);
    let confirm = || {
        vec![InvocationResultMember::FunctionResult(
            function_result("payments", "transferFunds")
                .confirmation_state(ConfirmationState::Confirm)
                .build()
                .unwrap(),
        )]
    };
    let run = invoke(
        &c,
        Call::new("PAYAGENT01", "PRODALIAS", "sess-reuse", "pay 5 to x"),
    )
    .await
    .unwrap();
    let id = run.roc().invocation_id().unwrap().to_owned();
    invoke(
        &c,
        Call::resume(
            "PAYAGENT01",
            "PRODALIAS",
            "sess-reuse",
            state(&id, confirm()),
        ),
    )
    .await
    .unwrap();
    let err = invoke(
        &c,
        Call::resume(
            "PAYAGENT01",
            "PRODALIAS",
            "sess-reuse",
            state(&id, confirm()),
        ),
    )
    .await
    .err()
    .unwrap();
    let e = err.as_service_error().unwrap();
    assert!(e.is_validation_exception());
    assert!(e.meta().message().unwrap().contains("already been used"));
    assert_eq!(h.resume_count(&id), 2);

    // idle past the agent's TTL (600 s): the session is gone, and so is its return of control
    let run = invoke(
        &c,
        Call::new("PAYAGENT01", "PRODALIAS", "sess-ttl", "pay 5 to x"),
    )
    .await
    .unwrap();
    let id = run.roc().invocation_id().unwrap().to_owned();
    h.advance_clock(Duration::from_secs(601));
    let err = invoke(
        &c,
        Call::resume("PAYAGENT01", "PRODALIAS", "sess-ttl", state(&id, confirm())),
    )
    .await
    .err()
    .unwrap();
    let e = err.as_service_error().unwrap();
    assert!(e.is_validation_exception());
    assert!(
        e.meta().message().unwrap().contains("expired"),
        "{:?}",
        e.meta().message()
    );
    // the same sessionId works again as a fresh session
    let again = invoke(
        &c,
        Call::new("PAYAGENT01", "PRODALIAS", "sess-ttl", "what is my balance"),
    )
    .await
    .unwrap();
    assert!(again.error.is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn exception_frames_surface_as_sdk_errors() {
    let h = sim_with(Faults::parse("exception=2:throttlingException").unwrap(), 0).await;
    let run = invoke(
        &client(&h),
        Call::new("PAYAGENT01", "PRODALIAS", "s-exc", "balance please"),
    )
    .await
    .unwrap();
    assert_eq!(run.events.len(), 2);
    let err = run.error.unwrap();
    let e = err.as_service_error().unwrap();
    assert!(e.is_throttling_exception(), "{e:?}");
    assert!(e.meta().message().unwrap().contains("injected"));
    h.shutdown().await;

    let h = sim_with(
        Faults::parse("exception=1:modelNotReadyException").unwrap(),
        0,
    )
    .await;
    let run = invoke(
        &client(&h),
        Call::new("PAYAGENT01", "PRODALIAS", "s-exc", "balance please"),
    )
    .await
    .unwrap();
    assert!(
        run.error
            .unwrap()
            .as_service_error()
            .unwrap()
            .is_model_not_ready_exception()
    );
    h.shutdown().await;
}

#[tokio::test]
async fn damaged_streams_fail_in_the_client_not_silently() {
    for (spec, label) in [
        ("corrupt=flip", "flip"),
        ("corrupt=truncate", "truncate"),
        ("drop=2", "drop"),
    ] {
        let h = sim_with(Faults::parse(spec).unwrap(), 0).await;
        let result = invoke(
            &client(&h),
            Call::new("PAYAGENT01", "PRODALIAS", "s-bad", "balance please"),
        )
        .await;
        match result {
            Ok(run) => assert!(run.error.is_some(), "{label}: the client must notice"),
            Err(e) => panic!("{label}: the headers were sent, so the call itself succeeds: {e:?}"),
        }
        h.shutdown().await;
    }
}

#[tokio::test]
async fn same_seed_same_events() {
    async fn events(seed: u64) -> Vec<String> {
        let h = sim_with(Faults::default(), seed).await;
        let c = client(&h);
        let mut out = Vec::new();
        for (agent, alias, input) in [
            ("PAYAGENT01", "PRODALIAS", "pay someone"),
            ("KBAGENT003", "LIVE", "leave policy?"),
            ("SUPERVISR1", "LIVE", "transfer money"),
        ] {
            let run = invoke(&c, Call::new(agent, alias, "sess-det", input))
                .await
                .unwrap();
            for e in &run.events {
                out.push(match e {
                    ResponseStream::Chunk(c) => format!("chunk {:?}", c.bytes().unwrap().as_ref()),
                    ResponseStream::ReturnControl(r) => format!(
                        "roc {:?} {}",
                        r.invocation_id(),
                        r.invocation_inputs().len()
                    ),
                    ResponseStream::Trace(t) => format!(
                        "trace {:?} {:?} {}",
                        t.session_id(),
                        t.collaborator_name(),
                        trace_digest(t)
                    ),
                    _ => "other".to_owned(),
                });
            }
            if let Ok(ResponseStream::ReturnControl(r)) = run.events.last().cloned().ok_or(()) {
                if let InvocationInputMember::FunctionInvocationInput(f) = &r.invocation_inputs()[0]
                {
                    out.push(format!("amount {:?}", f.parameters()[0].value()));
                }
            }
        }
        h.shutdown().await;
        out
    }
    fn trace_digest(t: &TracePart) -> String {
        match t.trace() {
            Some(Trace::OrchestrationTrace(OrchestrationTrace::Rationale(r))) => {
                format!("rationale {:?} {:?}", r.trace_id(), r.text())
            }
            Some(Trace::OrchestrationTrace(OrchestrationTrace::ModelInvocationOutput(m))) => {
                format!(
                    "model {:?} {:?} {:?}",
                    m.trace_id(),
                    m.metadata().unwrap().usage().unwrap().output_tokens(),
                    m.metadata().unwrap().total_time_ms()
                )
            }
            Some(other) => format!("{:?}", std::mem::discriminant(other)),
            None => "none".to_owned(),
        }
    }
    let a = events(42).await;
    let b = events(42).await;
    let c = events(43).await;
    assert!(a.len() > 20);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_sessions() {
    let h = sim().await;
    let c = client(&h);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let c = c.clone();
        tasks.spawn(async move {
            let session = format!("conc-{i}");
            let input = match i % 4 {
                0 => "pay 10 to acct-1",
                1 => "balance of account a-1",
                2 => "refund order 9",
                _ => "leave policy?",
            };
            let agent = if i % 4 == 3 {
                ("KBAGENT003", "LIVE")
            } else {
                ("PAYAGENT01", "PRODALIAS")
            };
            let run = invoke(&c, Call::new(agent.0, agent.1, &session, input))
                .await
                .unwrap();
            assert!(run.error.is_none());
            run.events.len()
        });
    }
    let mut frames = 0;
    while let Some(r) = tasks.join_next().await {
        frames += r.unwrap();
    }
    let wall = started.elapsed();
    let stats = h.stats();
    assert_eq!(stats.invocations, 200);
    assert_eq!(stats.sessions, 200);
    eprintln!(
        "200 concurrent sessions: {wall:?}, {frames} frames, {:.0} frames/s",
        frames as f64 / wall.as_secs_f64()
    );
    assert!(wall < Duration::from_secs(60));

    // one client, one session after another, streamed answers (many small frames)
    let started = Instant::now();
    let mut frames = 0;
    for i in 0..100 {
        let session = format!("seq-{i}");
        let mut call = Call::new(
            "KBAGENT003",
            "LIVE",
            &session,
            "how do I book business class travel?",
        );
        call.stream = true;
        frames += invoke(&c, call).await.unwrap().events.len();
    }
    let wall = started.elapsed();
    eprintln!(
        "100 sequential streamed invocations: {wall:?}, {frames} frames, {:.0} frames/s",
        frames as f64 / wall.as_secs_f64()
    );
    h.shutdown().await;
}
