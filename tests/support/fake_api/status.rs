//! `metav1.Status` error bodies exactly as the API server writes them, and the field errors of
//! validation. Owns no state; every constructor cites the Kubernetes function it copies
//! (`staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go`,
//! `staging/src/k8s.io/apimachinery/pkg/util/validation/field/errors.go`).

use serde_json::{Value, json};

/// An error answer of the API: an HTTP code and the `Status` object sent as its body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub body: Value,
    /// Extra response headers (`Retry-After` for 429).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// A `Status` with `kind`, `apiVersion` and empty `metadata`, as `responsewriters` encodes it.
    pub fn new(
        code: u16,
        reason: &str,
        message: impl Into<String>,
        details: Option<Value>,
    ) -> Self {
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message.into(),
            "code": code,
        });
        if !reason.is_empty() {
            body["reason"] = json!(reason);
        }
        if let Some(details) = details {
            body["details"] = details;
        }
        Self {
            code,
            body,
            headers: Vec::new(),
        }
    }

    /// `errors.NewNotFound`: `pods "x" not found`, details `{name, kind: <resource>}`.
    pub fn not_found(resource: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{resource} \"{name}\" not found"),
            Some(json!({"name": name, "kind": resource})),
        )
    }

    /// `errors.NewAlreadyExists`: `pods "x" already exists`.
    pub fn already_exists(resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
            Some(json!({"name": name, "kind": resource})),
        )
    }

    /// `errors.NewConflict`: `Operation cannot be fulfilled on pods "x": <why>`.
    pub fn conflict(resource: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {resource} \"{name}\": {why}"),
            Some(json!({"name": name, "kind": resource})),
        )
    }

    /// `errors.NewBadRequest`: reason `BadRequest`, no details.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message, None)
    }

    /// `errors.NewInvalid`: `Pod "x" is invalid: <aggregate>`, one cause per field error.
    /// The aggregate is the single error, or `[e1, e2]` (`utilerrors.NewAggregate`).
    pub fn invalid(kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let rendered: Vec<String> = errors.iter().map(FieldError::to_string).collect();
        let aggregate = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.kind.reason(), "message": e.body(), "field": e.field}))
            .collect();
        Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {aggregate}"),
            Some(json!({"name": name, "kind": kind, "causes": causes})),
        )
    }

    /// `errors.NewForbidden` with the RBAC authorizer's text
    /// (`pkg/endpoints/handlers/responsewriters/errors.go` `forbiddenMessage`).
    pub fn forbidden(resource: &str, name: &str, reason: &str) -> Self {
        let message = if name.is_empty() {
            format!("{resource} is forbidden: {reason}")
        } else {
            format!("{resource} \"{name}\" is forbidden: {reason}")
        };
        Self::new(
            403,
            "Forbidden",
            message,
            Some(if name.is_empty() {
                json!({"kind": resource})
            } else {
                json!({"name": name, "kind": resource})
            }),
        )
    }

    /// `errors.NewResourceExpired`: 410 `Expired`, as the watch cache answers a too-old
    /// resourceVersion (`staging/src/k8s.io/apiserver/pkg/storage/cacher/watch_cache.go`).
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message, None)
    }

    /// `errors.NewInternalError`: `Internal error occurred: <err>`, the error as the one cause.
    pub fn internal(err: &str) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {err}"),
            Some(json!({"causes": [{"message": err}]})),
        )
    }

    /// `errors.NewUnauthorized` as the authentication filter writes it.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized", None)
    }

    /// `errors.NewMethodNotSupported`.
    pub fn method_not_supported(resource: &str, method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on resources of kind \"{resource}\""),
            Some(json!({"kind": resource})),
        )
    }

    /// `errors.NewUnsupportedMediaType` (e.g. a JSON patch, which this fake does not apply).
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {content_type}"
            ),
            None,
        )
    }

    /// The 404 for a path no API group serves (`genericapiserver` NotFound handler).
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
            Some(json!({})),
        )
    }

    /// An error with a chosen code, the reason the API uses for it (`errors.go`
    /// `NewGenericServerResponse`): used by scripted faults.
    pub fn for_code(code: u16, message: &str) -> Self {
        let mut error = match code {
            500 => Self::internal(message),
            503 => Self::new(503, "ServiceUnavailable", message, Some(json!({}))),
            504 => Self::new(504, "Timeout", message, Some(json!({}))),
            429 => Self::new(
                429,
                "TooManyRequests",
                message,
                Some(json!({"retryAfterSeconds": 1})),
            ),
            _ => Self::new(code, "", message, None),
        };
        if code == 429 {
            error.headers.push(("Retry-After", "1".to_string()));
        }
        error
    }
}

/// `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    Invalid,
    Required,
    Duplicate,
    NotFound,
    Forbidden,
    NotSupported,
}

impl FieldErrorKind {
    /// The `StatusCause.reason` (`field.ErrorType` constants).
    fn reason(self) -> &'static str {
        match self {
            Self::Invalid => "FieldValueInvalid",
            Self::Required => "FieldValueRequired",
            Self::Duplicate => "FieldValueDuplicate",
            Self::NotFound => "FieldValueNotFound",
            Self::Forbidden => "FieldValueForbidden",
            Self::NotSupported => "FieldValueNotSupported",
        }
    }
}

/// `field.Error`: a path, a type, the bad value (if shown) and a detail.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    pub field: String,
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    pub fn invalid(field: impl Into<String>, value: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorKind::Invalid,
            field: field.into(),
            value: Some(value.to_string()),
            detail: detail.into(),
        }
    }

    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorKind::Required,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: &str) -> Self {
        Self {
            kind: FieldErrorKind::Duplicate,
            field: field.into(),
            value: Some(value.to_string()),
            detail: String::new(),
        }
    }

    pub fn not_found(field: impl Into<String>, value: &str) -> Self {
        Self {
            kind: FieldErrorKind::NotFound,
            field: field.into(),
            value: Some(value.to_string()),
            detail: String::new(),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorKind::Forbidden,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let quoted: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        Self {
            kind: FieldErrorKind::NotSupported,
            field: field.into(),
            value: Some(value.to_string()),
            detail: format!("supported values: {}", quoted.join(", ")),
        }
    }

    /// `field.Error.ErrorBody`: `Invalid value: "x": detail`, `Required value`, ...
    pub fn body(&self) -> String {
        let value = self
            .value
            .as_deref()
            .map(|v| format!("{:?}", v))
            .unwrap_or_default();
        let head = match self.kind {
            FieldErrorKind::Invalid => format!("Invalid value: {value}"),
            FieldErrorKind::Required => "Required value".to_string(),
            FieldErrorKind::Duplicate => format!("Duplicate value: {value}"),
            FieldErrorKind::NotFound => format!("Not found: {value}"),
            FieldErrorKind::Forbidden => "Forbidden".to_string(),
            FieldErrorKind::NotSupported => format!("Unsupported value: {value}"),
        };
        if self.detail.is_empty() {
            head
        } else {
            format!("{head}: {}", self.detail)
        }
    }
}

impl std::fmt::Display for FieldError {
    /// `field.Error.Error`: `<field>: <body>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}
