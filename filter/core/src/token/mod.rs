//! Bearer tokens: finding them, verifying them, and caching the result.

pub mod cache;
pub mod extract;
pub mod remote;
pub mod verify;

use std::fmt;

/// Why a presented token was refused. Each variant has a stable reason code
/// (for audit and metrics) and a short, safe description (for the client's
/// `WWW-Authenticate: Bearer error="invalid_token", error_description=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Over [`verify::MAX_TOKEN_BYTES`]; not parsed at all.
    TooLarge,
    /// Not a compact JWS: wrong part count, bad base64url, not JSON, ...
    Malformed(&'static str),
    /// JWE (five parts) or another serialization Palisade does not accept.
    Unsupported,
    /// More than one token in the request.
    Multiple,
    /// `alg` is not on the provider's allow-list (this includes `none`).
    AlgNotAllowed,
    /// `crit` header present: Palisade understands no extensions.
    Crit,
    /// No key with that `kid`, or no key at all for the token's `alg`.
    UnknownKey,
    /// The `kid` names a key whose type or declared `alg` does not fit the token's `alg`.
    KeyMismatch,
    BadSignature,
    /// A claim or header name appears twice.
    DuplicateName,
    /// The `iss` of no configured provider.
    BadIssuer,
    BadAudience,
    MissingExp,
    Expired,
    NotYetValid,
    IssuedInFuture,
    LifetimeTooLong,
    /// A registered claim has the wrong JSON type (e.g. a numeric `sub`).
    ClaimType(&'static str),
    /// The provider's keys come from its JWKS endpoint and none are held
    /// yet; `retry` when the config answers 503 rather than 401.
    KeysUnavailable {
        retry: bool,
    },
}

impl TokenError {
    /// Stable reason code, used in audit records and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::TooLarge => "token_too_large",
            TokenError::Malformed(_) => "token_malformed",
            TokenError::Unsupported => "token_unsupported",
            TokenError::Multiple => "token_multiple",
            TokenError::AlgNotAllowed => "token_alg_not_allowed",
            TokenError::Crit => "token_crit",
            TokenError::UnknownKey => "token_unknown_key",
            TokenError::KeyMismatch => "token_key_mismatch",
            TokenError::BadSignature => "token_bad_signature",
            TokenError::DuplicateName => "token_duplicate_name",
            TokenError::BadIssuer => "token_bad_issuer",
            TokenError::BadAudience => "token_bad_audience",
            TokenError::MissingExp => "token_missing_exp",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::IssuedInFuture => "token_issued_in_future",
            TokenError::LifetimeTooLong => "token_lifetime_too_long",
            TokenError::ClaimType(_) => "token_claim_type",
            TokenError::KeysUnavailable { .. } => "token_keys_unavailable",
        }
    }

    /// Short description safe to send to the client.
    pub fn description(&self) -> &'static str {
        match self {
            TokenError::TooLarge => "token too large",
            TokenError::Malformed(what) => what,
            TokenError::Unsupported => "only compact JWS tokens are accepted",
            TokenError::Multiple => "more than one token in the request",
            TokenError::AlgNotAllowed => "algorithm not allowed",
            TokenError::Crit => "critical header extensions are not supported",
            TokenError::UnknownKey => "no matching key",
            TokenError::KeyMismatch => "algorithm does not fit the key",
            TokenError::BadSignature => "signature invalid",
            TokenError::DuplicateName => "duplicate claim or header name",
            TokenError::BadIssuer => "issuer not trusted",
            TokenError::BadAudience => "audience not accepted",
            TokenError::MissingExp => "exp claim required",
            TokenError::Expired => "token expired",
            TokenError::NotYetValid => "token not yet valid",
            TokenError::IssuedInFuture => "token issued in the future",
            TokenError::LifetimeTooLong => "token lifetime too long",
            TokenError::ClaimType(what) => what,
            TokenError::KeysUnavailable { .. } => "the issuer's keys are not available yet",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason(), self.description())
    }
}
