//! Shared fixtures for the fuzz targets: the demo configuration, test tokens
//! minted with the TEST-ONLY keys of `envoy/test-keys`, a fixed clock, and a
//! readable text format for fuzzed requests.
//!
//! Request format (one item per `\n`-separated line, any bytes otherwise):
//!
//! ```text
//! :method: GET                 a header: name up to the first `:` after the
//! :path: /api/v1/customers/42  first byte, one leading space of the value dropped
//! @token customer              `authorization: Bearer <minted token>`
//! @id req-1                    Request.id (likewise @protocol, @source,
//! @source 10.0.0.1:5000        @destination, @principal)
//! @usage {"customer-bulk": {}} input.usage, as JSON
//! ```

use palisade_core::algorithm::Alg;
use palisade_core::config::Config;
use palisade_core::mint::{self, SigningKey};
use palisade_core::request::{Headers, Request};
use palisade_core::token::verify::{Provider, VerifiedToken};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{json, Map, Value};
use std::fmt;
use std::time::Duration;

/// The shipped demo configuration (reference policy, demo issuer, limits).
pub const DEMO_CONFIG: &[u8] = include_bytes!("../../envoy/demo-config.json");
/// The fixed clock of every target (2023-11-14T22:13:20Z): minted tokens
/// stay valid forever and a crash input replays the same way.
pub const NOW_SECS: u64 = 1_700_000_000;
pub const NOW: Duration = Duration::from_secs(NOW_SECS);
pub const ISSUER: &str = "https://idp.palisade.test";
pub const AUDIENCE: &str = "customer-api";

const RS256_PEM: &[u8] = include_bytes!("../../envoy/test-keys/rs256.key.pem");
const ES256_PEM: &[u8] = include_bytes!("../../envoy/test-keys/es256.key.pem");
const EDDSA_PEM: &[u8] = include_bytes!("../../envoy/test-keys/eddsa.key.pem");
const ATTACKER_RS256_PEM: &[u8] = include_bytes!("../../envoy/test-keys/attacker-rs256.key.pem");
const JWKS: &str = include_str!("../../envoy/test-keys/jwks.json");
/// An Ed25519 key no configuration trusts (TEST-ONLY, public; made with
/// `openssl genpkey -algorithm ed25519` for the fuzz targets).
const ATTACKER_EDDSA_PEM: &[u8] = b"-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEILSGAGnIKhGyfvYx77I0fsydf2OfQT0JtIfwEZHFCrre
-----END PRIVATE KEY-----
";

/// True when `PALISADE_FUZZ_DEBUG` is set: targets then print what they
/// decided, for triage (`PALISADE_FUZZ_DEBUG=1 target/.../gate crash-file`).
pub fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("PALISADE_FUZZ_DEBUG").is_some())
}

/// The demo configuration, compiled.
pub fn demo_config() -> Config {
    Config::from_json(DEMO_CONFIG).expect("envoy/demo-config.json must load")
}

/// A test token and whether a trusted key signed it.
pub struct Minted {
    pub name: &'static str,
    pub token: String,
    /// Signed by a key the demo issuer's JWKS holds.
    pub genuine: bool,
}

/// The trusted Ed25519 key of the demo issuer (kid `test-eddsa`).
pub fn trusted_eddsa() -> SigningKey {
    key(Alg::EdDSA, Some("test-eddsa"), EDDSA_PEM)
}

/// An Ed25519 key nobody trusts, claiming the trusted kid.
pub fn attacker_eddsa() -> SigningKey {
    key(Alg::EdDSA, Some("test-eddsa"), ATTACKER_EDDSA_PEM)
}

fn key(alg: Alg, kid: Option<&str>, pem: &[u8]) -> SigningKey {
    SigningKey::from_pem(alg, kid, pem).expect("test key must load")
}

/// Claims of the demo issuer at [`NOW`], living 600 s, with `extra` merged.
fn claims(extra: Value) -> Value {
    mint::claims(ISSUER, AUDIENCE, NOW_SECS, 600, &extra)
}

/// Tokens for every role of the reference policy, plus ones that must be refused.
pub fn minted_tokens() -> Vec<Minted> {
    let customer = json!({"sub": "c-42", "roles": ["customer"], "customer_id": "42"});
    let mint = |k: &SigningKey, c: &Value| k.mint(c).expect("minting a test token");
    let rs256 = key(Alg::RS256, Some("test-rs256"), RS256_PEM);
    let es256 = key(Alg::ES256, Some("test-es256"), ES256_PEM);
    let attacker = key(Alg::RS256, Some("test-rs256"), ATTACKER_RS256_PEM);
    // Key confusion: HS256 keyed with the trusted RSA public modulus.
    let jwks: Value = serde_json::from_str(JWKS).expect("jwks.json");
    let n = jwks["keys"][0]["n"].as_str().expect("jwks.json RSA key");
    let confused = SigningKey::from_secret(Alg::HS256, Some("test-rs256"), n.as_bytes())
        .expect("hmac test key");
    let expired = mint::claims(ISSUER, AUDIENCE, NOW_SECS - 1_000, 600, &customer);
    let mallory = json!({"sub": "mallory", "roles": ["customer"], "customer_id": "42"});
    let support = json!({"sub": "s-7", "roles": ["support"],
                         "ticket": {"id": "T-1", "customer_id": "42"}});
    let export = json!({"sub": "data-export", "scope": "customers:export"});
    vec![
        Minted {
            name: "customer",
            token: mint(&rs256, &claims(customer.clone())),
            genuine: true,
        },
        Minted {
            name: "support",
            token: mint(&es256, &claims(support)),
            genuine: true,
        },
        Minted {
            name: "export",
            token: mint(&trusted_eddsa(), &claims(export)),
            genuine: true,
        },
        Minted {
            name: "expired",
            token: mint(&rs256, &expired),
            genuine: true,
        },
        Minted {
            name: "attacker",
            token: mint(&attacker, &claims(mallory.clone())),
            genuine: false,
        },
        Minted {
            name: "attacker-eddsa",
            token: mint(&attacker_eddsa(), &claims(mallory)),
            genuine: false,
        },
        Minted {
            name: "hs256-confusion",
            token: mint(&confused, &claims(customer.clone())),
            genuine: false,
        },
        Minted {
            name: "none",
            token: mint::unsigned(
                r#"{"alg":"none","typ":"JWT"}"#,
                &claims(customer).to_string(),
            ),
            genuine: false,
        },
    ]
}

/// Header and payload (decoded) of every genuine token: the only content a
/// token made by the fuzzer may ever be verified with.
pub fn genuine_contents(tokens: &[Minted]) -> Vec<(Map<String, Value>, Map<String, Value>)> {
    tokens
        .iter()
        .filter(|t| t.genuine)
        .map(|t| decode_parts(t.token.as_bytes()).expect("minted token decodes"))
        .collect()
}

/// The decoded header and payload objects of a compact JWS, if it is one.
pub fn decode_parts(token: &[u8]) -> Option<(Map<String, Value>, Map<String, Value>)> {
    let text = std::str::from_utf8(token).ok()?;
    let mut parts = text.split('.');
    let part = |p: Option<&str>| -> Option<Map<String, Value>> {
        let bytes = base64url_decode(p?)?;
        match serde_json::from_slice(&bytes).ok()? {
            Value::Object(map) => Some(map),
            _ => None,
        }
    };
    Some((part(parts.next())?, part(parts.next())?))
}

/// Unpadded base64url, written out here so the oracle shares no code with
/// the verifier.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Asserts what every verified token must satisfy under `provider`, checked
/// from the claims themselves (RFC 7519 and the provider's rules), not by
/// re-running the verifier.
pub fn assert_claims_hold(token: &VerifiedToken, provider: &Provider, now: Duration) {
    let p = &token.payload;
    let h = &token.header;
    assert_eq!(token.provider, provider.name);
    let alg = h
        .get("alg")
        .and_then(Value::as_str)
        .expect("alg is a string");
    assert!(
        provider.algorithms.iter().any(|a| a.name() == alg),
        "alg {alg} is not allowed"
    );
    assert!(!h.contains_key("crit"), "a crit header was accepted");
    assert!(
        h.get("kid").is_none_or(Value::is_string),
        "kid not a string"
    );
    assert_eq!(
        p.get("iss").and_then(Value::as_str),
        Some(provider.issuer.as_str())
    );
    match p.get("aud") {
        Some(Value::String(a)) => assert!(provider.audiences.contains(a), "aud {a}"),
        Some(Value::Array(items)) => {
            assert!(items.iter().all(Value::is_string), "aud holds a non-string");
            assert!(
                items.iter().any(|a| provider
                    .audiences
                    .iter()
                    .any(|b| Some(b.as_str()) == a.as_str())),
                "no accepted audience in {items:?}"
            );
        }
        other => panic!("aud {other:?} was accepted"),
    }
    assert!(
        p.get("sub").is_none_or(Value::is_string),
        "sub not a string"
    );
    let number = |name: &str| match p.get(name) {
        None => None,
        Some(Value::Number(n)) => Some(n.as_f64().expect("a JSON number is an f64")),
        Some(other) => panic!("{name} = {other} was accepted"),
    };
    let now = now.as_secs_f64();
    let leeway = provider.leeway_seconds as f64;
    let exp = number("exp").expect("a token without exp was accepted");
    assert!(now < exp + leeway, "expired token accepted (exp {exp})");
    assert!(
        number("nbf").is_none_or(|nbf| nbf <= now + leeway),
        "token not yet valid"
    );
    let iat = number("iat");
    assert!(
        iat.is_none_or(|iat| iat <= now + leeway),
        "iat in the future"
    );
    assert!(
        exp - iat.unwrap_or(now) <= provider.max_lifetime_seconds as f64,
        "lifetime over the maximum"
    );
    assert_eq!(token.expires_at, exp);
    assert_ne!(token.document, regorus::Value::Undefined);
}

/// The top-level member names of a JSON object, duplicates kept (`None` if
/// `json` is not an object). Independent of the verifier's strict parser.
pub fn top_level_names(json: &[u8]) -> Option<Vec<String>> {
    struct Names;
    impl<'de> Visitor<'de> for Names {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut names = Vec::new();
            while let Some((k, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                names.push(k);
            }
            Ok(names)
        }
    }
    struct Object(Vec<String>);
    impl<'de> de::Deserialize<'de> for Object {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(Names).map(Object)
        }
    }
    serde_json::from_slice::<Object>(json).ok().map(|o| o.0)
}

/// A request parsed from the text format above; `@token NAME` picks from `tokens`.
pub struct FuzzRequest {
    pub request: Request,
    pub usage: Option<regorus::Value>,
}

pub fn parse_request(data: &[u8], tokens: &[Minted]) -> FuzzRequest {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut request = Request::default();
    let mut usage = None;
    let text = |v: &[u8]| Some(String::from_utf8_lossy(v).into_owned());
    for line in data.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"@") {
            let (word, arg) = match rest.iter().position(|&b| b == b' ') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            match word {
                b"token" => {
                    if let Some(t) = tokens.iter().find(|t| t.name.as_bytes() == arg) {
                        let value = format!("Bearer {}", t.token).into_bytes();
                        pairs.push((b"authorization".to_vec(), value));
                    }
                }
                b"id" => request.id = text(arg),
                b"protocol" => request.protocol = text(arg),
                b"source" => request.source_address = text(arg),
                b"destination" => request.destination_address = text(arg),
                b"principal" => request.source_principal = text(arg),
                b"usage" => {
                    usage = std::str::from_utf8(arg)
                        .ok()
                        .and_then(|s| regorus::Value::from_json_str(s).ok())
                }
                _ => pairs.push(header(line)),
            }
        } else if !line.is_empty() {
            pairs.push(header(line));
        }
    }
    request.headers = Headers::from_pairs(pairs);
    FuzzRequest { request, usage }
}

fn header(line: &[u8]) -> (Vec<u8>, Vec<u8>) {
    match line.iter().skip(1).position(|&b| b == b':') {
        Some(i) => {
            let (name, value) = (&line[..i + 1], &line[i + 2..]);
            let value = value.strip_prefix(b" ").unwrap_or(value);
            (name.to_vec(), value.to_vec())
        }
        None => (line.to_vec(), Vec::new()),
    }
}
