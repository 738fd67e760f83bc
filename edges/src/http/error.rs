//! One error shape for every refusal, and the mapping from warp's own rejections to it.

use std::convert::Infallible;

use aurora_storage::StorageError;
use warp::http::StatusCode;
use warp::reject::Reject;
use warp::{Rejection, Reply};

/// A refusal with its HTTP status, a stable machine-readable code and a human message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, at least one) on a rate-limited answer.
    pub retry_after: Option<std::time::Duration>,
}

impl Reject for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub fn llm_unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "LLM_UNAVAILABLE", message)
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(message: impl Into<String>, retry_after: std::time::Duration) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message)
        }
    }

    pub fn into_response(self) -> warp::reply::Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut resp =
            warp::reply::with_status(warp::reply::json(&body), self.status).into_response();
        if let Some(after) = self.retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            resp.headers_mut()
                .insert("retry-after", warp::http::HeaderValue::from(secs.max(1)));
        }
        resp
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> ApiError {
        match err {
            StorageError::Invalid { .. } => ApiError::validation(err.to_string()),
            StorageError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "CONFLICT", m),
            StorageError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StorageError::InvalidCredentials => ApiError::unauthorized("invalid email or password"),
            StorageError::Unauthorized(m) => ApiError::unauthorized(m),
            StorageError::Forbidden(m) => ApiError::forbidden(m),
            StorageError::LimitReached(m) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "LIMIT_REACHED", m)
            }
            StorageError::Busy(m) => ApiError {
                retry_after: Some(std::time::Duration::from_secs(1)),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "BUSY", m)
            },
            // The store's errors carry no secret, but may name internal addresses: the
            // details go to the log, the client gets the kind.
            StorageError::Secrets(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, "secret store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SECRET_STORE_UNAVAILABLE",
                    "the secret store is unavailable, try again",
                )
            }
            StorageError::Secrets(e) => {
                tracing::error!(error = %e, "secret store error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "SECRET_STORE_ERROR",
                    "the secret store failed (details are in the node's log)",
                )
            }
            ref e if e.is_unavailable() => {
                tracing::error!(error = %err, "database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SERVICE_UNAVAILABLE",
                    "the database is unavailable, try again",
                )
            }
            other => {
                tracing::error!(error = %other, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "internal error",
                )
            }
        }
    }
}

impl From<aurora_models::llm::LlmError> for ApiError {
    fn from(err: aurora_models::llm::LlmError) -> ApiError {
        use aurora_models::llm::LlmError;
        match err {
            LlmError::Unconfigured(_) | LlmError::Unavailable(_) => {
                ApiError::llm_unavailable(err.to_string())
            }
            LlmError::Rejected { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "LLM_REJECTED", err.to_string())
            }
            LlmError::Protocol(_) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "LLM_PROTOCOL_ERROR",
                err.to_string(),
            ),
        }
    }
}

/// Handlers return `Result<Response, ApiError>`; this turns either side into the response.
pub fn respond(result: Result<warp::reply::Response, ApiError>) -> warp::reply::Response {
    result.unwrap_or_else(ApiError::into_response)
}

/// Turns any rejection into the JSON error shape.
pub async fn handle_rejection(rej: Rejection) -> Result<warp::reply::Response, Infallible> {
    let err = if let Some(e) = rej.find::<ApiError>() {
        ApiError::new(e.status, e.code, e.message.clone())
    } else if rej.is_not_found() {
        ApiError::not_found("no such route")
    } else if rej.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "method not allowed on this route",
        )
    } else if rej.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "request body too large",
        )
    } else if rej.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "LENGTH_REQUIRED",
            "a Content-Length header is required",
        )
    } else if rej.find::<warp::reject::UnsupportedMediaType>().is_some() {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "expected application/json",
        )
    } else if let Some(e) = rej.find::<warp::reject::InvalidHeader>() {
        ApiError::bad_request(e.to_string())
    } else if let Some(e) = rej.find::<warp::reject::InvalidQuery>() {
        ApiError::bad_request(e.to_string())
    } else if let Some(e) = rej.find::<warp::reject::MissingHeader>() {
        ApiError::bad_request(e.to_string())
    } else {
        tracing::error!(rejection = ?rej, "unhandled rejection");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error",
        )
    };
    Ok(err.into_response())
}
