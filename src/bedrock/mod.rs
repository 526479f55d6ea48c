//! The Bedrock Agent Runtime adapter: the only module that sees `aws-sdk-bedrockagentruntime`
//! types. `BedrockRunner` invokes agents with tracing on and records every event; each
//! `returnControl` becomes an approval request through `domain::validate` and the policy, the
//! same path as `agentdeck submit`; `ResumeWorker` sends decided requests back exactly once
//! from the store's outbox. Errors are typed and say what to do.

mod event;
pub mod executor;
pub mod http;
pub mod import;
pub mod recording;
pub mod runner;
pub mod wire;
pub mod worker;
pub mod writer;

use aws_sdk_bedrockagentruntime::error::{ProvideErrorMetadata, SdkError};

pub use executor::{CommandExecutor, NoExecutor, ScriptedExecutor};
pub use runner::{
    BedrockRunner, InvocationSummary, InvokeRequest, LiveEvent, Recorder, RunnerSettings,
    SubmitSettings,
};
pub use worker::{ResumeOutcome, ResumeReport, ResumeWorker};
pub use writer::TraceWriter;

use crate::domain::validate::SubmitError;
use crate::store::StoreError;

/// The environment variable that aborts the resume worker after the results are built and kept,
/// just before the send is recorded and made: the exactly-once tests kill the process there.
pub const CRASH_BEFORE_RESUME_ENV: &str = "AGENTDECK_TEST_CRASH_BEFORE_RESUME";

/// Why a call to Bedrock (or what it led to) failed. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(
        "no AWS credentials ({detail}): set AWS_PROFILE (and run `aws sso login` for an SSO \
         profile), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )]
    MissingCredentials { detail: String },
    #[error("no AWS region: set AWS_REGION, a region in your profile, or pass --region")]
    MissingRegion,
    #[error(
        "access denied ({message}): the caller needs bedrock:InvokeAgent on the agent alias \
         {agent_id}/{alias_id}"
    )]
    AccessDenied {
        agent_id: String,
        alias_id: String,
        message: String,
    },
    #[error(
        "not found ({message}): check agent {agent_id}, alias {alias_id}, and that the region is \
         the agent's"
    )]
    NotFound {
        agent_id: String,
        alias_id: String,
        message: String,
    },
    #[error(
        "throttled by Bedrock ({message}): wait and try again, or ask for a higher InvokeAgent \
         quota"
    )]
    Throttled { message: String },
    #[error("Bedrock refused the request as invalid ({message})")]
    Validation { message: String },
    #[error("Bedrock failed with {code} ({message}){}", if *.retryable { "; it may succeed if tried again" } else { "" })]
    Service {
        code: String,
        message: String,
        retryable: bool,
    },
    #[error("cannot reach Bedrock ({detail}): check the network, the region and --endpoint-url")]
    Transport { detail: String, sent: SendState },
    #[error("the agent's event stream broke ({detail}); what arrived before is stored")]
    Stream { detail: String },
    #[error(
        "the agent's event stream stalled: no event for {idle_secs} s after {events} events; \
         what arrived before is stored, the turn is recorded as cut short"
    )]
    Stalled { idle_secs: u64, events: u64 },
    #[error("the agent returned control, but the request is not valid ({0}); nothing was queued")]
    Submission(SubmitError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the resume: {0}")]
    Build(String),
}

/// Whether a failed request may have reached the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendState {
    /// It failed before anything was sent (construction, credentials, connection refused).
    NotSent,
    /// It may have been received: the outcome is unknown.
    Unknown,
}

impl RunnerError {
    /// Worth trying again later, as it is (throttling, 5xx, transport).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Throttled { .. }
            | Self::Transport { .. }
            | Self::Stream { .. }
            | Self::Stalled { .. }
            | Self::Store(StoreError::Unavailable(_)) => true,
            Self::Service { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// The service's error code, for a modelled service error.
    pub fn service_code(&self) -> Option<&str> {
        match self {
            Self::AccessDenied { .. } => Some("AccessDeniedException"),
            Self::NotFound { .. } => Some("ResourceNotFoundException"),
            Self::Throttled { .. } => Some("ThrottlingException"),
            Self::Validation { .. } => Some("ValidationException"),
            Self::Service { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The text of an error and all its sources, for matching and messages.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The modelled name of a service error. Exception frames in the event stream carry no error
/// code in their metadata, so the variant is what tells them apart.
pub(crate) trait ErrorName {
    fn name(&self) -> Option<&'static str>;
}

macro_rules! error_names {
    ($ty:ty) => {
        impl ErrorName for $ty {
            fn name(&self) -> Option<&'static str> {
                Some(match self {
                    Self::AccessDeniedException(_) => "AccessDeniedException",
                    Self::BadGatewayException(_) => "BadGatewayException",
                    Self::ConflictException(_) => "ConflictException",
                    Self::DependencyFailedException(_) => "DependencyFailedException",
                    Self::InternalServerException(_) => "InternalServerException",
                    Self::ModelNotReadyException(_) => "ModelNotReadyException",
                    Self::ResourceNotFoundException(_) => "ResourceNotFoundException",
                    Self::ServiceQuotaExceededException(_) => "ServiceQuotaExceededException",
                    Self::ThrottlingException(_) => "ThrottlingException",
                    Self::ValidationException(_) => "ValidationException",
                    _ => return None,
                })
            }
        }
    };
}

error_names!(aws_sdk_bedrockagentruntime::operation::invoke_agent::InvokeAgentError);
error_names!(aws_sdk_bedrockagentruntime::types::error::ResponseStreamError);

/// An SDK error (from the initial call or from the event stream) as a `RunnerError`.
pub(crate) fn classify<E, R>(err: &SdkError<E, R>, agent_id: &str, alias_id: &str) -> RunnerError
where
    E: ProvideErrorMetadata + ErrorName + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let detail = chain(err);
    if let SdkError::ServiceError(service) = err {
        let e = service.err();
        let code = e.name().or(e.code()).unwrap_or("UnknownError").to_owned();
        let message = e.message().unwrap_or("no message").to_owned();
        // Stream exceptions carry the `:exception-type` (`throttlingException`); HTTP errors the
        // modelled name (`ThrottlingException`): compare without case.
        let key = code.to_ascii_lowercase();
        let key = key.trim_end_matches("exception");
        let (agent_id, alias_id) = (agent_id.to_owned(), alias_id.to_owned());
        return match key {
            "accessdenied" => RunnerError::AccessDenied {
                agent_id,
                alias_id,
                message,
            },
            "resourcenotfound" => RunnerError::NotFound {
                agent_id,
                alias_id,
                message,
            },
            "throttling" | "servicequotaexceeded" => RunnerError::Throttled { message },
            "validation" => RunnerError::Validation { message },
            "internalserver" | "badgateway" | "modelnotready" | "dependencyfailed" => {
                RunnerError::Service {
                    code,
                    message,
                    retryable: true,
                }
            }
            _ => RunnerError::Service {
                code,
                message,
                retryable: false,
            },
        };
    }
    let lower = detail.to_ascii_lowercase();
    if lower.contains("credential") || lower.contains("identity resolver") {
        return RunnerError::MissingCredentials { detail };
    }
    match err {
        SdkError::ConstructionFailure(_) => RunnerError::Transport {
            detail,
            sent: SendState::NotSent,
        },
        SdkError::DispatchFailure(d) => RunnerError::Transport {
            sent: if d.is_user() || lower.contains("connection refused") {
                SendState::NotSent
            } else {
                SendState::Unknown
            },
            detail,
        },
        SdkError::TimeoutError(_) => RunnerError::Transport {
            detail,
            sent: SendState::Unknown,
        },
        _ => RunnerError::Stream { detail },
    }
}
