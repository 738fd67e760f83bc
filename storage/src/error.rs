use sea_orm::{DbErr, SqlErr};

/// Everything the storage layer can refuse or fail with. The edges map each variant to one HTTP
/// status and error code.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("{0}")]
    Unauthorized(String),
    /// Allowed to no one in the caller's position (registration closed, say).
    #[error("{0}")]
    Forbidden(String),
    /// The org is at one of its caps (documents kept, ingestions at once).
    #[error("{0}")]
    LimitReached(String),
    /// The node is at a bound it keeps (concurrent password hashes); try again shortly.
    #[error("{0}")]
    Busy(String),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("redis error: {0}")]
    Redis(String),
    /// The secret store failed; its errors never carry a secret value.
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error("schema check failed: {0}")]
    Schema(String),
    #[error("{0}")]
    Internal(String),
}

impl StorageError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> StorageError {
        StorageError::Invalid {
            field,
            message: message.into(),
        }
    }

    /// Whether this means "cannot reach the database" rather than a bad query or a refusal.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StorageError::Db(DbErr::ConnectionAcquire(_) | DbErr::Conn(_))
        )
    }

    /// Maps a unique-constraint violation to `Conflict(message)`, anything else to `Db`.
    pub(crate) fn from_db_conflict(err: DbErr, message: &str) -> StorageError {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                StorageError::Conflict(message.to_string())
            }
            _ => StorageError::Db(err),
        }
    }
}
