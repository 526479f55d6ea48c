//! Errors: `SimError` for the simulator's own failures (bad scenario, cannot bind), and
//! `AwsError`, an error the simulated service returns to its client in AWS's restJson1 shape.

use thiserror::Error;

/// The simulator could not be configured or started.
#[derive(Debug, Error)]
pub enum SimError {
    #[error("scenario {source_name}: {message}")]
    Scenario {
        source_name: String,
        message: String,
    },
    #[error("faults {0:?}: {1}")]
    Faults(String, String),
    #[error("cannot bind 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl SimError {
    pub(crate) fn scenario(source_name: &str, message: impl Into<String>) -> Self {
        Self::Scenario {
            source_name: source_name.to_owned(),
            message: message.into(),
        }
    }
}

/// An error in AWS's shape: HTTP status, `x-amzn-ErrorType` and `{"message": ...}`; or, once the
/// stream has started, an exception frame of the same type in camelCase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub status: u16,
    /// The error code as `x-amzn-ErrorType` names it, e.g. `ValidationException`.
    pub code: &'static str,
    pub message: String,
}

impl AwsError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationException", message)
    }

    /// One constraint failure, worded as AWS's request validator words it.
    pub fn constraint(value: &str, field: &str, constraint: &str) -> Self {
        Self::validation(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
        ))
    }

    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(400, "SerializationException", message)
    }

    pub fn not_found() -> Self {
        Self::new(
            404,
            "ResourceNotFoundException",
            "Failed to retrieve resource because it doesn't exist. Retry the request with a different resource identifier.",
        )
    }

    pub fn throttling() -> Self {
        Self::new(
            429,
            "ThrottlingException",
            "Your request rate is too high. Reduce the frequency of requests.",
        )
    }

    pub fn missing_auth() -> Self {
        Self::new(
            403,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )
    }

    pub fn incomplete_signature(message: impl Into<String>) -> Self {
        Self::new(403, "IncompleteSignatureException", message)
    }

    pub fn unknown_operation() -> Self {
        Self::new(404, "UnknownOperationException", "Unknown operation")
    }

    pub fn dependency_failed(message: impl Into<String>) -> Self {
        Self::new(424, "DependencyFailedException", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalServerException", message)
    }

    /// The `:exception-type` header value for this error inside an event stream.
    pub fn exception_type(&self) -> String {
        let mut chars = self.code.chars();
        chars.next().map_or_else(String::new, |first| {
            first.to_ascii_lowercase().to_string() + chars.as_str()
        })
    }

    pub fn body(&self) -> String {
        serde_json::json!({ "message": self.message }).to_string()
    }
}

/// Map an `:exception-type` name (camelCase) to its HTTP code and status, for scenario files.
pub fn exception_from_name(name: &str, message: impl Into<String>) -> Option<AwsError> {
    let (status, code) = match name {
        "internalServerException" => (500, "InternalServerException"),
        "validationException" => (400, "ValidationException"),
        "resourceNotFoundException" => (404, "ResourceNotFoundException"),
        "serviceQuotaExceededException" => (400, "ServiceQuotaExceededException"),
        "throttlingException" => (429, "ThrottlingException"),
        "accessDeniedException" => (403, "AccessDeniedException"),
        "conflictException" => (409, "ConflictException"),
        "dependencyFailedException" => (424, "DependencyFailedException"),
        "badGatewayException" => (502, "BadGatewayException"),
        "modelNotReadyException" => (424, "ModelNotReadyException"),
        _ => return None,
    };
    Some(AwsError::new(status, code, message))
}
