//! Mapping a denial to HTTP. This is the only place statuses are chosen.
//!
//! | denial | status | `WWW-Authenticate` |
//! | --- | --- | --- |
//! | invalid token | 401 | `Bearer error="invalid_token", error_description="…"` |
//! | remote JWKS not fetched yet (`when_unavailable: unavailable`) | 503 + `Retry-After` | — |
//! | no token and no mTLS identity, policy said no | 401 | `Bearer` |
//! | policy asked for step-up (`step_up`) | 401 | `Bearer error="insufficient_user_authentication", …, acr_values="…", max_age="…"` (RFC 9470) |
//! | policy said no, failed, or gave an invalid result | 403 | — |
//! | no policy held yet (remote bundle not fetched) | 503 + `Retry-After` | — |
//!
//! A denying policy object's `http_status`, `body` and `headers` replace the
//! defaults. The default body is JSON naming the stable reason code.

use crate::host::LocalReply;
use crate::stream::DECISION_ID_HEADER;
use palisade_core::gate::{Denial, DenialKind};
use palisade_core::ratelimit::limits::LimitDenial;
use palisade_core::token::TokenError;
use std::time::Duration;

/// The reply for `denial`.
pub fn for_denial(denial: &Denial, decision_id: &str) -> LocalReply {
    let mut headers: Vec<(String, String)> = Vec::new();
    let (status, error) = match &denial.kind {
        // The issuer's keys could not be fetched yet: Palisade's state, not
        // the caller's fault, and worth a retry.
        DenialKind::InvalidToken(TokenError::KeysUnavailable { retry: true }) => {
            headers.push(("retry-after".into(), "5".into()));
            (503, "unavailable")
        }
        DenialKind::InvalidToken(e) => {
            headers.push((
                "www-authenticate".into(),
                format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    e.description()
                ),
            ));
            (401, "invalid_token")
        }
        DenialKind::Unauthenticated => {
            headers.push(("www-authenticate".into(), "Bearer".into()));
            (401, "unauthenticated")
        }
        DenialKind::StepUp(step_up) => {
            let mut challenge = String::from(
                "Bearer error=\"insufficient_user_authentication\", error_description=\"A different authentication level is required\"",
            );
            if let Some(acr) = &step_up.acr_values {
                challenge.push_str(&format!(", acr_values=\"{acr}\""));
            }
            if let Some(age) = step_up.max_age {
                challenge.push_str(&format!(", max_age=\"{age}\""));
            }
            headers.push(("www-authenticate".into(), challenge));
            (401, "insufficient_user_authentication")
        }
        DenialKind::Forbidden => (403, "forbidden"),
        // No policy held yet (a remote bundle not fetched): worth a retry.
        DenialKind::PolicyUnavailable => {
            headers.push(("retry-after".into(), "5".into()));
            (503, "unavailable")
        }
        DenialKind::Limited(limited) => return for_limit(limited, denial.reason, decision_id),
    };
    let status = denial.reply.http_status.unwrap_or(status);
    let body = match &denial.reply.body {
        Some(body) => body.clone(),
        None => {
            headers.push(("content-type".into(), "application/json".into()));
            serde_json::json!({
                "error": error,
                "reason": denial.reason,
                "decision_id": decision_id,
            })
            .to_string()
        }
    };
    // The policy may replace the challenge, never the decision id.
    for (name, value) in &denial.reply.headers {
        if name == DECISION_ID_HEADER {
            continue;
        }
        if name == "www-authenticate" {
            headers.retain(|(k, _)| k != "www-authenticate");
        }
        headers.push((name.clone(), value.clone()));
    }
    headers.push((DECISION_ID_HEADER.into(), decision_id.to_owned()));
    LocalReply {
        status,
        headers,
        body,
    }
}

/// Replies for rate-limit refusals: 400 page size (with a message the
/// client can act on), 403 suspended, 429 with `Retry-After` and the IETF
/// `RateLimit-Policy` / `RateLimit` fields, 503 when the identity table is full.
fn for_limit(limited: &LimitDenial, reason: &str, decision_id: &str) -> LocalReply {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    let (status, error, message) = match limited {
        LimitDenial::PageSize { message, .. } => (400, "bad_request", Some(message.clone())),
        LimitDenial::Suspended { .. } => (403, "forbidden", None),
        LimitDenial::RateLimited {
            rule,
            retry_after,
            limit,
            period,
        } => {
            let retry = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            let retry = retry.max(1);
            headers.push(("retry-after".into(), retry.to_string()));
            headers.push((
                "ratelimit-policy".into(),
                format!("\"{rule}\";q={limit};w={}", period.as_secs()),
            ));
            headers.push(("ratelimit".into(), format!("\"{rule}\";r=0;t={retry}")));
            (429, "too_many_requests", None)
        }
        LimitDenial::Contended { .. } => {
            headers.push(("retry-after".into(), "1".into()));
            (429, "too_many_requests", None)
        }
        // Not the caller's doing: the gate tracks as many identities as it may.
        LimitDenial::TableFull { .. } => {
            headers.push(("retry-after".into(), "1".into()));
            (503, "unavailable", None)
        }
        LimitDenial::RecordsExhausted { retry_after, .. } => {
            headers.push((
                "retry-after".into(),
                retry_after.as_secs().max(1).to_string(),
            ));
            (429, "too_many_requests", None)
        }
    };
    headers.push((DECISION_ID_HEADER.into(), decision_id.to_owned()));
    let mut body =
        serde_json::json!({"error": error, "reason": reason, "decision_id": decision_id});
    if let (Some(message), Some(obj)) = (message, body.as_object_mut()) {
        obj.insert("message".into(), message.into());
    }
    LocalReply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// The reply when an upstream reports more records than the budget allows
/// (counted by header): 429, and the body never leaves.
pub fn records_refused(rule: &str, retry_after: Duration, decision_id: &str) -> LocalReply {
    for_limit(
        &LimitDenial::RecordsExhausted {
            rule: rule.to_owned(),
            retry_after,
        },
        "records_exhausted",
        decision_id,
    )
}

/// The reply for a refusal by a fleet-wide limit: the same as the local
/// limit's it mirrors (see [`palisade_core::ratelimit::global::GlobalVerdict`]).
pub fn for_fleet_limit(limited: &LimitDenial, decision_id: &str) -> LocalReply {
    for_limit(limited, limited.reason(), decision_id)
}

/// The reply for a request that cannot be taken as sent: 400, the reason and
/// a message the client can act on.
pub fn bad_request(reason: &str, message: &str, decision_id: &str) -> LocalReply {
    LocalReply {
        status: 400,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (DECISION_ID_HEADER.into(), decision_id.to_owned()),
        ],
        body: serde_json::json!({"error": "bad_request", "reason": reason, "message": message, "decision_id": decision_id})
            .to_string(),
    }
}

/// The reply when Palisade cannot decide (no configuration, a host failure):
/// fail closed with 503 and the reason.
pub fn unavailable(reason: &str, decision_id: &str) -> LocalReply {
    LocalReply {
        status: 503,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (DECISION_ID_HEADER.into(), decision_id.to_owned()),
        ],
        body: serde_json::json!({"error": "unavailable", "reason": reason, "decision_id": decision_id})
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::decision::ReplyOverrides;

    fn denial(kind: DenialKind, reason: &'static str) -> Denial {
        Denial {
            kind,
            reason,
            detail: String::new(),
            reply: ReplyOverrides::default(),
        }
    }

    fn header<'a>(r: &'a LocalReply, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn invalid_token_is_401_with_error_description() {
        let r = for_denial(
            &denial(
                DenialKind::InvalidToken(TokenError::Expired),
                "token_expired",
            ),
            "d1",
        );
        assert_eq!(r.status, 401);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer error=\"invalid_token\", error_description=\"token expired\"")
        );
        assert!(
            r.body.contains("\"reason\":\"token_expired\""),
            "{}",
            r.body
        );
    }

    #[test]
    fn unauthenticated_is_401_with_bare_challenge() {
        let r = for_denial(&denial(DenialKind::Unauthenticated, "policy_denied"), "d1");
        assert_eq!(r.status, 401);
        assert_eq!(header(&r, "www-authenticate"), Some("Bearer"));
    }

    #[test]
    fn step_up_is_401_with_the_rfc_9470_challenge() {
        let step_up = palisade_core::decision::StepUp {
            acr_values: Some("mfa phr".into()),
            max_age: Some(300),
        };
        let r = for_denial(
            &denial(DenialKind::StepUp(step_up), "step_up_required"),
            "d1",
        );
        assert_eq!(r.status, 401);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer error=\"insufficient_user_authentication\", error_description=\"A different authentication level is required\", acr_values=\"mfa phr\", max_age=\"300\"")
        );
        assert!(
            r.body
                .contains("\"error\":\"insufficient_user_authentication\""),
            "{}",
            r.body
        );
        let only_age = palisade_core::decision::StepUp {
            acr_values: None,
            max_age: Some(60),
        };
        let r = for_denial(
            &denial(DenialKind::StepUp(only_age), "step_up_required"),
            "d1",
        );
        let challenge = header(&r, "www-authenticate").unwrap_or_default();
        assert!(
            challenge.ends_with("required\", max_age=\"60\""),
            "{challenge}"
        );
    }

    #[test]
    fn forbidden_is_403_without_challenge() {
        let r = for_denial(&denial(DenialKind::Forbidden, "policy_error"), "d1");
        assert_eq!(r.status, 403);
        assert_eq!(header(&r, "www-authenticate"), None);
        assert_eq!(header(&r, "x-palisade-decision-id"), Some("d1"));
    }

    #[test]
    fn policy_overrides_status_body_and_headers() {
        let mut d = denial(DenialKind::Forbidden, "policy_denied");
        d.reply = ReplyOverrides {
            http_status: Some(451),
            body: Some("legal hold".into()),
            headers: vec![("x-why".into(), "legal".into())],
        };
        let r = for_denial(&d, "d1");
        assert_eq!((r.status, r.body.as_str()), (451, "legal hold"));
        assert_eq!(header(&r, "x-why"), Some("legal"));
        assert_eq!(header(&r, "content-type"), None);
    }

    #[test]
    fn policy_cannot_forge_the_decision_id_but_may_replace_the_challenge() {
        let mut d = denial(DenialKind::Unauthenticated, "policy_denied");
        d.reply.headers = vec![
            ("x-palisade-decision-id".into(), "forged".into()),
            ("www-authenticate".into(), "Bearer realm=\"corp\"".into()),
        ];
        let r = for_denial(&d, "d1");
        let ids: Vec<_> = r
            .headers
            .iter()
            .filter(|(k, _)| k == "x-palisade-decision-id")
            .collect();
        assert_eq!(
            ids,
            vec![&("x-palisade-decision-id".to_owned(), "d1".to_owned())]
        );
        let challenges: Vec<_> = r
            .headers
            .iter()
            .filter(|(k, _)| k == "www-authenticate")
            .collect();
        assert_eq!(challenges.len(), 1);
        assert_eq!(challenges[0].1, "Bearer realm=\"corp\"");
    }

    #[test]
    fn rate_limited_is_429_with_retry_after_and_ietf_fields() {
        let limited = LimitDenial::RateLimited {
            rule: "bulk".into(),
            retry_after: std::time::Duration::from_millis(2_300),
            limit: 60,
            period: std::time::Duration::from_secs(60),
        };
        let r = for_denial(&denial(DenialKind::Limited(limited), "rate_limited"), "d1");
        assert_eq!(r.status, 429);
        assert_eq!(header(&r, "retry-after"), Some("3"));
        assert_eq!(header(&r, "ratelimit-policy"), Some("\"bulk\";q=60;w=60"));
        assert_eq!(header(&r, "ratelimit"), Some("\"bulk\";r=0;t=3"));
    }

    #[test]
    fn page_size_is_400_with_a_message_and_suspension_403() {
        let page = LimitDenial::PageSize {
            rule: "bulk".into(),
            message: "too big".into(),
        };
        let r = for_denial(&denial(DenialKind::Limited(page), "page_size"), "d1");
        assert_eq!(r.status, 400);
        assert!(r.body.contains("too big"), "{}", r.body);
        let s = LimitDenial::Suspended {
            rule: "bulk".into(),
            until: 5,
        };
        let r = for_denial(&denial(DenialKind::Limited(s), "suspended"), "d1");
        assert_eq!((r.status, r.body.contains("suspended")), (403, true));
    }

    #[test]
    fn a_full_identity_table_is_503_not_the_callers_fault() {
        let full = LimitDenial::TableFull {
            rule: "bulk".into(),
        };
        let r = for_denial(&denial(DenialKind::Limited(full), "limit_table_full"), "d1");
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "retry-after"), Some("1"));
        assert!(r.body.contains("limit_table_full"), "{}", r.body);
    }

    #[test]
    fn unavailable_is_503_with_its_reason() {
        let r = unavailable("not_configured", "d");
        assert_eq!(r.status, 503);
        assert!(r.body.contains("not_configured"));
    }
}
