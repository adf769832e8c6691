//! Reading a policy result as a decision, failing closed on anything unclear.
//!
//! Only `true`, or an object with `allowed: true`, allows. Everything else —
//! undefined, `"true"`, `1`, an object without a boolean `allowed`, an
//! evaluation error — denies, each with its own stable reason code.

use regorus::Value;

/// What the policy said, read strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyVerdict {
    Allow(AllowDirectives),
    Deny(PolicyDenial),
}

/// Changes an allowing OPA-Envoy-style decision asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowDirectives {
    /// `headers`: added to the request sent upstream.
    pub request_headers_to_add: Vec<(String, String)>,
    /// `request_headers_to_remove`.
    pub request_headers_to_remove: Vec<String>,
    /// `response_headers_to_add`: added to the response sent downstream.
    pub response_headers_to_add: Vec<(String, String)>,
}

/// A denial from policy evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDenial {
    pub reason: DenyReason,
    /// The policy asks the caller to authenticate again, more strongly
    /// (`step_up`, RFC 9470).
    pub step_up: Option<StepUp>,
    /// Detail for logs only (e.g. the evaluation error); never sent to the client.
    pub detail: String,
    /// The reply the policy asked for, if any.
    pub response: ReplyOverrides,
}

/// Stable reasons a policy evaluation denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// Evaluation ran past `policy.max_eval_ms` and was stopped.
    Timeout,
    /// `allowed: false` with a valid `step_up`: stronger or fresher
    /// authentication is required.
    StepUp,
    /// The policy decided `false` / `allowed: false`.
    Denied,
    /// No rule produced a value.
    Undefined,
    /// Evaluation failed: a runtime error, conflicting rules, a timeout.
    Error,
    /// The result is not a boolean nor an object with a boolean `allowed`,
    /// or an allowing object carries malformed directives.
    InvalidResult,
}

impl DenyReason {
    pub fn code(self) -> &'static str {
        match self {
            DenyReason::StepUp => "step_up_required",
            DenyReason::Timeout => "policy_timeout",
            DenyReason::Denied => "policy_denied",
            DenyReason::Undefined => "policy_undefined",
            DenyReason::Error => "policy_error",
            DenyReason::InvalidResult => "policy_invalid_result",
        }
    }
}

/// `http_status`, `body` and `headers` of a denying decision object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyOverrides {
    pub http_status: Option<u16>,
    pub body: Option<String>,
    pub headers: Vec<(String, String)>,
}

/// What a step-up challenge asks for (RFC 9470): the authentication
/// context classes acceptable, and the most seconds since the user last
/// authenticated. At least one is present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepUp {
    /// Space-separated ACR values, e.g. `"mfa"`.
    pub acr_values: Option<String>,
    pub max_age: Option<u64>,
}

fn deny(reason: DenyReason, detail: impl Into<String>) -> PolicyVerdict {
    PolicyVerdict::Deny(PolicyDenial {
        reason,
        step_up: None,
        detail: detail.into(),
        response: ReplyOverrides::default(),
    })
}

/// Interprets the result of evaluating the decision rule.
pub fn interpret(result: Result<Value, String>) -> PolicyVerdict {
    let value = match result {
        Ok(v) => v,
        Err(e) if crate::policy::is_time_limit(&e) => return deny(DenyReason::Timeout, e),
        Err(e) => return deny(DenyReason::Error, e),
    };
    match &value {
        Value::Undefined => deny(DenyReason::Undefined, "the decision is undefined"),
        Value::Bool(true) => PolicyVerdict::Allow(AllowDirectives::default()),
        Value::Bool(false) => deny(DenyReason::Denied, "the decision is false"),
        Value::Object(_) => interpret_object(&value),
        other => deny(
            DenyReason::InvalidResult,
            format!(
                "the decision must be a boolean or an object, got {}",
                type_name(other)
            ),
        ),
    }
}

fn interpret_object(obj: &Value) -> PolicyVerdict {
    match &obj["allowed"] {
        Value::Bool(true) => match allow_directives(obj) {
            Ok(d) => PolicyVerdict::Allow(d),
            Err(e) => deny(DenyReason::InvalidResult, e),
        },
        Value::Bool(false) => {
            let (response, mut problems) = reply_overrides(obj);
            let step_up = match step_up(&obj["step_up"]) {
                Ok(step_up) => step_up,
                Err(e) => {
                    problems.push(e);
                    None
                }
            };
            PolicyVerdict::Deny(PolicyDenial {
                reason: if step_up.is_some() {
                    DenyReason::StepUp
                } else {
                    DenyReason::Denied
                },
                step_up,
                detail: if problems.is_empty() {
                    "allowed is false".into()
                } else {
                    format!("allowed is false; ignored: {}", problems.join("; "))
                },
                response,
            })
        }
        Value::Undefined => deny(
            DenyReason::InvalidResult,
            "the decision object has no `allowed`",
        ),
        other => deny(
            DenyReason::InvalidResult,
            format!("`allowed` must be a boolean, got {}", type_name(other)),
        ),
    }
}

/// `step_up: {acr_values?, max_age?}`; `Ok(None)` when absent. A malformed
/// one is reported and the denial stays a plain one.
fn step_up(value: &Value) -> Result<Option<StepUp>, String> {
    if value == &Value::Undefined {
        return Ok(None);
    }
    if !matches!(value, Value::Object(_)) {
        return Err(format!(
            "step_up must be an object, got {}",
            type_name(value)
        ));
    }
    let acr_values = match &value["acr_values"] {
        Value::Undefined => None,
        // Travels inside a quoted challenge parameter.
        Value::String(s)
            if !s.is_empty()
                && s.bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') =>
        {
            Some(s.to_string())
        }
        other => {
            return Err(format!(
                "step_up.acr_values must be a non-empty string of printable ASCII without quotes, got {}",
                type_name(other)
            ))
        }
    };
    let max_age = match &value["max_age"] {
        Value::Undefined => None,
        Value::Number(n) => match n.as_u64() {
            Some(age) => Some(age),
            None => return Err("step_up.max_age must be a whole number of seconds".into()),
        },
        other => {
            return Err(format!(
                "step_up.max_age must be a number, got {}",
                type_name(other)
            ))
        }
    };
    if acr_values.is_none() && max_age.is_none() {
        return Err("step_up needs acr_values or max_age".into());
    }
    Ok(Some(StepUp {
        acr_values,
        max_age,
    }))
}

fn allow_directives(obj: &Value) -> Result<AllowDirectives, String> {
    // OPA-Envoy fields Palisade cannot apply: letting the request through
    // without them could hand the upstream a query parameter the policy
    // meant to strip, so such an allow is refused, loudly.
    for field in ["query_parameters_to_set", "query_parameters_to_remove"] {
        if obj[field] != Value::Undefined {
            return Err(format!(
                "`{field}` is not supported by Palisade; the request is refused rather than sent unchanged"
            ));
        }
    }
    let request_headers_to_remove = match &obj["request_headers_to_remove"] {
        Value::Undefined => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|v| header_name(v, "request_headers_to_remove"))
            .collect::<Result<_, _>>()?,
        other => {
            return Err(format!(
                "`request_headers_to_remove` must be an array, got {}",
                type_name(other)
            ))
        }
    };
    Ok(AllowDirectives {
        request_headers_to_add: headers(&obj["headers"], "headers")?,
        request_headers_to_remove,
        response_headers_to_add: headers(
            &obj["response_headers_to_add"],
            "response_headers_to_add",
        )?,
    })
}

/// The reply fields of a denial. Malformed fields are dropped (the denial
/// stands) and reported for the log.
fn reply_overrides(obj: &Value) -> (ReplyOverrides, Vec<String>) {
    let mut problems = Vec::new();
    let http_status = match &obj["http_status"] {
        Value::Undefined => None,
        Value::Number(n) => match n.as_u64().and_then(|s| u16::try_from(s).ok()) {
            Some(s) if (200..=599).contains(&s) => Some(s),
            _ => {
                problems.push(format!(
                    "http_status {} is not in 200..=599",
                    n.format_decimal()
                ));
                None
            }
        },
        other => {
            problems.push(format!(
                "http_status must be a number, got {}",
                type_name(other)
            ));
            None
        }
    };
    let body = match &obj["body"] {
        Value::Undefined => None,
        Value::String(s) => Some(s.to_string()),
        other => {
            problems.push(format!("body must be a string, got {}", type_name(other)));
            None
        }
    };
    let headers = headers(&obj["headers"], "headers").unwrap_or_else(|e| {
        problems.push(e);
        Vec::new()
    });
    (
        ReplyOverrides {
            http_status,
            body,
            headers,
        },
        problems,
    )
}

/// An object of header name → string (or array of strings).
fn headers(value: &Value, field: &str) -> Result<Vec<(String, String)>, String> {
    let map = match value {
        Value::Undefined => return Ok(Vec::new()),
        Value::Object(map) => map,
        other => {
            return Err(format!(
                "`{field}` must be an object, got {}",
                type_name(other)
            ))
        }
    };
    let mut out = Vec::new();
    for (name, v) in map.iter() {
        let name = header_name(name, field)?;
        let values: Vec<&Value> = match v {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        for v in values {
            let text = match v {
                Value::String(s) => s.to_string(),
                other => {
                    return Err(format!(
                        "`{field}.{name}` must be a string, got {}",
                        type_name(other)
                    ))
                }
            };
            if text.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(format!("`{field}.{name}` contains a control character"));
            }
            out.push((name.clone(), text));
        }
    }
    Ok(out)
}

fn header_name(v: &Value, field: &str) -> Result<String, String> {
    match v {
        Value::String(s)
            if !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) =>
        {
            Ok(s.to_ascii_lowercase())
        }
        other => Err(format!(
            "`{field}` has an invalid header name (a {})",
            type_name(other)
        )),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Set(_) => "set",
        Value::Object(_) => "object",
        Value::Undefined => "undefined",
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
