//! `palisade token`: mint a token with a TEST-ONLY key, for demos and tests.
//! Never point it at a production key: anyone holding these keys can mint.

use palisade_core::algorithm::Alg;
use palisade_core::mint::{self, SigningKey};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// PKCS#8 PEM private key (TEST-ONLY).
    #[arg(long, default_value = "envoy/test-keys/rs256.key.pem")]
    key: PathBuf,
    /// Signing algorithm.
    #[arg(long, default_value = "RS256")]
    alg: String,
    /// `kid` header.
    #[arg(long, default_value = "test-rs256")]
    kid: String,
    #[arg(long, default_value = "https://idp.palisade.test")]
    iss: String,
    #[arg(long, default_value = "customer-api")]
    aud: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 600)]
    ttl: u64,
    /// Issue at this Unix time instead of now (e.g. to match a case's clock).
    #[arg(long)]
    now: Option<u64>,
    /// Claims merged over iss/aud/iat/exp, e.g. '{"sub":"alice","roles":["customer"]}';
    /// "now+N" strings become relative times.
    #[arg(default_value = "{}")]
    claims: String,
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    let alg = Alg::parse(&args.alg).ok_or_else(|| format!("unknown algorithm `{}`", args.alg))?;
    let pem =
        std::fs::read(&args.key).map_err(|e| format!("cannot read {}: {e}", args.key.display()))?;
    let key = if alg.is_hmac() {
        SigningKey::from_secret(alg, Some(&args.kid), &pem)?
    } else {
        SigningKey::from_pem(alg, Some(&args.kid), &pem)?
    };
    let extra: serde_json::Value =
        serde_json::from_str(&args.claims).map_err(|e| format!("claims are not JSON: {e}"))?;
    if !extra.is_object() {
        return Err("claims must be a JSON object".into());
    }
    let now = match args.now {
        Some(n) => n,
        None => crate::cli::check::wall_clock_secs(),
    };
    let claims = mint::claims(&args.iss, &args.aud, now, args.ttl, &extra);
    println!("{}", key.mint(&claims)?);
    Ok(ExitCode::SUCCESS)
}
