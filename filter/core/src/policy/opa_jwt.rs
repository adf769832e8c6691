//! OPA's `io.jwt.*` builtins and `time.now_ns`, as regorus extensions
//! backed by Palisade's own token verification.
//!
//! OPA-Envoy policies verify bearer tokens in Rego (OPA's Envoy primer
//! calls `io.jwt.decode_verify(encoded, {"secret": "secret"})`), and
//! regorus has no `io.jwt` builtins. These follow OPA's documented
//! semantics (the builtin reference and `v1/topdown/tokens.go`):
//!
//! - `io.jwt.decode(jwt)` is `[header, payload, sig_hex]`, and an error
//!   for a malformed token;
//! - `io.jwt.decode_verify(jwt, constraints)` is `[valid, header,
//!   payload]`, `[false, {}, {}]` for a token that does not verify or
//!   meet the constraints (see `opa_jwt/constraints.rs`);
//! - `io.jwt.verify_<alg>(jwt, key)` is a boolean: `key` is a PEM
//!   certificate, a PEM public key or a JWK (set) for the asymmetric
//!   algorithms, the plain-text secret for `hs*`.
//!
//! What makes a token valid is Palisade's verifier's judgement, not a
//! looser one: the same parser and refusals (`opa_jwt/jws.rs`) and the
//! same key rules (`opa_jwt/keys.rs`). So beyond OPA, tokens over
//! [`MAX_TOKEN_BYTES`](crate::token::verify::MAX_TOKEN_BYTES), with a
//! `crit` header, with duplicate member names, or in an algorithm outside
//! [`Alg`] are never valid, and RSA keys under 2048 bits verify nothing.
//! The algorithm is the token's only if the key's type (or the builtin)
//! allows it.
//!
//! Errors are for the policy's mistakes (a malformed `cert`, a bad
//! constraint): an error ends the evaluation, which denies. A bad token is
//! the caller's, so the verifying builtins answer `false` for it, never an
//! error; OPA errors on a structurally malformed token, but by default
//! turns builtin errors into *undefined*, which policies treat as "not
//! valid" too. ES512 is not offered: jsonwebtoken's RustCrypto backend
//! has no P-521.

mod constraints;
mod jws;
mod keys;

use crate::algorithm::Alg;
use constraints::Constraints;
use keys::{KeyCache, Keys};
use regorus::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The host clock a policy reads through `time.now_ns` and the default
/// `time` of `io.jwt.decode_verify`. The gate sets it before each
/// evaluation; unset (zero) means no clock, and those builtins then fail
/// (which denies).
#[derive(Debug, Clone, Default)]
pub struct EvalClock(Arc<AtomicU64>);

impl EvalClock {
    /// Sets the time evaluations see (since the Unix epoch).
    pub fn set(&self, now: Duration) {
        let ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        self.0.store(ns, Ordering::Relaxed);
    }

    /// Nanoseconds since the Unix epoch, if set.
    pub fn now_ns(&self) -> Option<u64> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(ns),
        }
    }
}

/// The `io.jwt.verify_*` builtins and the algorithm each verifies.
const VERIFIERS: [(&str, Alg); 12] = [
    ("io.jwt.verify_eddsa", Alg::EdDSA),
    ("io.jwt.verify_es256", Alg::ES256),
    ("io.jwt.verify_es384", Alg::ES384),
    ("io.jwt.verify_hs256", Alg::HS256),
    ("io.jwt.verify_hs384", Alg::HS384),
    ("io.jwt.verify_hs512", Alg::HS512),
    ("io.jwt.verify_ps256", Alg::PS256),
    ("io.jwt.verify_ps384", Alg::PS384),
    ("io.jwt.verify_ps512", Alg::PS512),
    ("io.jwt.verify_rs256", Alg::RS256),
    ("io.jwt.verify_rs384", Alg::RS384),
    ("io.jwt.verify_rs512", Alg::RS512),
];

/// The functions [`register`] adds, for the load-time check that every
/// call resolves.
pub const NAMES: [&str; 15] = [
    "io.jwt.decode",
    "io.jwt.decode_verify",
    "io.jwt.verify_eddsa",
    "io.jwt.verify_es256",
    "io.jwt.verify_es384",
    "io.jwt.verify_hs256",
    "io.jwt.verify_hs384",
    "io.jwt.verify_hs512",
    "io.jwt.verify_ps256",
    "io.jwt.verify_ps384",
    "io.jwt.verify_ps512",
    "io.jwt.verify_rs256",
    "io.jwt.verify_rs384",
    "io.jwt.verify_rs512",
    "time.now_ns",
];

/// Adds the extensions to `engine`, reading time from `clock`.
pub fn register(engine: &mut regorus::Engine, clock: &EvalClock) -> Result<(), String> {
    let mut add = |name: &str, nargs: u8, extension: Box<dyn regorus::Extension>| {
        engine
            .add_extension(name.into(), nargs, extension)
            .map_err(|e| format!("{name}: {e}"))
    };
    let now = clock.clone();
    add(
        "time.now_ns",
        0,
        Box::new(move |_: Vec<Value>| match now.now_ns() {
            Some(ns) => Ok(Value::from(ns)),
            None => anyhow::bail!("time.now_ns: the host gave no clock"),
        }),
    )?;
    add("io.jwt.decode", 1, Box::new(decode_extension))?;
    // One cache of parsed `cert` arguments for all the builtins.
    let cache = KeyCache::default();
    let (now, certs) = (clock.clone(), cache.clone());
    add(
        "io.jwt.decode_verify",
        2,
        Box::new(move |args: Vec<Value>| decode_verify_extension(&args, &now, &certs)),
    )?;
    for (name, alg) in VERIFIERS {
        let certs = cache.clone();
        add(
            name,
            2,
            Box::new(move |args: Vec<Value>| verify_extension(name, alg, &args, &certs)),
        )?;
    }
    Ok(())
}

/// Argument `index` (from 1, as OPA counts) of `function`, as a string.
fn string_arg<'a>(function: &str, args: &'a [Value], index: usize) -> anyhow::Result<&'a str> {
    match index
        .checked_sub(1)
        .and_then(|i| args.get(i))
        .map(Value::as_string)
    {
        Some(Ok(text)) => Ok(text),
        _ => anyhow::bail!("{function}: operand {index} must be a string"),
    }
}

/// `io.jwt.decode(jwt)`. A token that cannot be decoded makes the call
/// undefined, as in OPA-Envoy: OPA raises an error, which its default
/// (non-strict) evaluation turns into an undefined expression, whereas an
/// extension's error would stop regorus's whole evaluation, so a caller
/// sending `Bearer x` could turn a public path's allow into a
/// `policy_error`. A non-string operand stays an error.
fn decode_extension(args: Vec<Value>) -> anyhow::Result<Value> {
    const NAME: &str = "io.jwt.decode";
    let token = string_arg(NAME, &args, 1)?;
    let Ok((header, payload, signature)) = jws::decode(token) else {
        return Ok(Value::Undefined);
    };
    let (header, payload) = (to_rego(header), to_rego(payload));
    if header == Value::Undefined || payload == Value::Undefined {
        return Ok(Value::Undefined);
    }
    Ok(Value::from(vec![header, payload, Value::from(signature)]))
}

/// `io.jwt.decode_verify(jwt, constraints)`.
fn decode_verify_extension(
    args: &[Value],
    clock: &EvalClock,
    cache: &KeyCache,
) -> anyhow::Result<Value> {
    const NAME: &str = "io.jwt.decode_verify";
    let token = string_arg(NAME, args, 1)?;
    let constraints = args.get(1).unwrap_or(&Value::Undefined);
    let constraints = Constraints::parse(constraints, clock, cache)
        .map_err(|e| anyhow::anyhow!("{NAME}: {e}"))?;
    Ok(decode_verify(token, &constraints))
}

/// The builtin's answer for `token` under parsed constraints.
fn decode_verify(token: &str, constraints: &Constraints) -> Value {
    let unverified = || {
        Value::from(vec![
            Value::from(false),
            Value::new_object(),
            Value::new_object(),
        ])
    };
    match constraints::decode_verify(token, constraints) {
        Ok((header, payload)) => {
            let (header, payload) = (to_rego(header), to_rego(payload));
            // The policy sees the token it was verified as, or nothing.
            if header == Value::Undefined || payload == Value::Undefined {
                return unverified();
            }
            Value::from(vec![Value::from(true), header, payload])
        }
        Err(_) => unverified(),
    }
}

/// `io.jwt.verify_<alg>(jwt, certificate_or_secret)`.
fn verify_extension(
    name: &str,
    alg: Alg,
    args: &[Value],
    cache: &KeyCache,
) -> anyhow::Result<Value> {
    let token = string_arg(name, args, 1)?;
    let key = string_arg(name, args, 2)?;
    let keys = if alg.is_hmac() {
        Keys::secret(key)
    } else {
        cache.keys(key).map(Keys::Set)
    }
    .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    Ok(Value::from(
        jws::verify_as(token.as_bytes(), alg, &keys).is_ok(),
    ))
}

/// A header or claim set as the policy sees it (`Undefined` if regorus
/// cannot hold it).
fn to_rego(object: serde_json::Map<String, serde_json::Value>) -> Value {
    Value::from(serde_json::Value::Object(object))
}

#[cfg(test)]
#[path = "opa_jwt_tests.rs"]
mod tests;
