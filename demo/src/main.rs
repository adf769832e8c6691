//! `palisade-demo`: a small customer-data HTTP API for Envoy to front in
//! demos and end-to-end tests of the Palisade filter.
//!
//! Usage: `palisade-demo api [--listen ADDR]` (default `127.0.0.1:8080`).
//! On start it prints exactly one line, `listening on http://ADDR`, with the
//! port actually bound, so scripts can pass `127.0.0.1:0` and read the port
//! back instead of racing for a free one.
//!
//! The command line is parsed by hand: it has one subcommand and one option,
//! which does not justify a dependency.

use palisade_demo::{api, data, server, sidecar, token};

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

/// Address used when `--listen` is not given.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Worker threads: enough to overlap a few slow clients, few enough for a
/// 2-core CI machine that also runs Envoy.
const WORKERS: usize = 4;

const USAGE: &str = "usage:
  palisade-demo api [--listen ADDR]
      Serves the demo customer-data API (default ADDR 127.0.0.1:8080; port 0
      picks a free port). Prints `listening on http://HOST:PORT` once bound.
  palisade-demo token [--key PEM] [--alg ALG] [--kid KID] [--ttl SECS] [--count N] [CLAIMS_JSON]
      Prints a token signed with a TEST-ONLY key (default
      envoy/test-keys/rs256.key.pem, RS256, kid test-rs256, 600 s), with the
      demo issuer's iss/aud/iat/exp and CLAIMS_JSON merged over them.
      --count N prints N tokens, one per line, each with its own jti
      (PREFIX-0 .. PREFIX-<N-1>; PREFIX is the jti in CLAIMS_JSON, else the clock).
  palisade-demo render-sidecar [--listen-port N] [--admin-port N] [--upstream-port N] [--wasm PATH]
      Prints envoy/sidecar.yaml rendered from envoy/sidecar.template.yaml.
      Run from the repository root.
  palisade-demo render-config
      Prints envoy/demo-config.json: the sidecar's plugin configuration alone,
      for `palisade check/eval/serve --config`.";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Api { listen: String },
    Token(token::TokenRequest),
    RenderSidecar(sidecar::Placement),
    RenderConfig,
    Help,
}

/// Parses the arguments after the program name. `Err` carries the message
/// printed above the usage text.
fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut args = args.into_iter();
    match args.next().as_deref() {
        Some("api") => {}
        Some("token") => return parse_token(args),
        Some("render-sidecar") => return parse_render(args),
        Some("render-config") => return Ok(Command::RenderConfig),
        Some("-h" | "--help" | "help") => return Ok(Command::Help),
        Some(other) => return Err(format!("unknown command: {other}")),
        None => return Err("missing command".to_string()),
    }
    let mut listen = DEFAULT_LISTEN.to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--listen" => {
                listen = args
                    .next()
                    .filter(|value| !value.is_empty())
                    .ok_or("--listen needs an address")?;
            }
            _ => match arg.strip_prefix("--listen=") {
                Some(value) if !value.is_empty() => listen = value.to_string(),
                Some(_) => return Err("--listen needs an address".to_string()),
                None => return Err(format!("unknown argument: {arg}")),
            },
        }
    }
    Ok(Command::Api { listen })
}

fn value(args: &mut impl Iterator<Item = String>, flag: &str) -> Result<String, String> {
    args.next()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{flag} needs a value"))
}

fn parse_token(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut req = token::TokenRequest::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--key" => req.key_file = value(&mut args, "--key")?,
            "--alg" => req.alg = value(&mut args, "--alg")?,
            "--kid" => req.kid = value(&mut args, "--kid")?,
            "--ttl" => {
                req.ttl_seconds = value(&mut args, "--ttl")?
                    .parse()
                    .map_err(|_| "--ttl needs a whole number of seconds")?
            }
            "--count" => {
                req.count = Some(
                    value(&mut args, "--count")?
                        .parse()
                        .map_err(|_| "--count needs a whole number of tokens")?,
                )
            }
            _ if arg.starts_with('{') => req.claims = arg,
            _ => return Err(format!("unknown argument: {arg}")),
        }
    }
    Ok(Command::Token(req))
}

fn parse_render(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut at = sidecar::Placement::default();
    let port = |v: String, flag: &str| {
        v.parse::<u16>()
            .map_err(|_| format!("{flag} needs a port number"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen-port" => at.listen_port = port(value(&mut args, &arg)?, &arg)?,
            "--admin-port" => at.admin_port = port(value(&mut args, &arg)?, &arg)?,
            "--upstream-port" => at.upstream_port = port(value(&mut args, &arg)?, &arg)?,
            "--wasm" => at.wasm_path = value(&mut args, &arg)?,
            _ => return Err(format!("unknown argument: {arg}")),
        }
    }
    Ok(Command::RenderSidecar(at))
}

/// Prints `text` (plus a newline) or the error; the exit code says which.
fn print_result(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(text) => {
            let _ = writeln!(std::io::stdout(), "{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("palisade-demo: {message}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let listen = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Api { listen }) => listen,
        Ok(Command::Token(req)) => return print_result(token::mint(&req)),
        Ok(Command::RenderConfig) => {
            return print_result(
                sidecar::plugin_config(std::path::Path::new("."))
                    .and_then(|c| serde_json::to_string_pretty(&c).map_err(|e| e.to_string())),
            );
        }
        Ok(Command::RenderSidecar(at)) => {
            let repo = std::path::Path::new(".");
            return print_result(
                sidecar::plugin_config(repo).and_then(|c| sidecar::render_repo(repo, &c, &at)),
            );
        }
        Ok(Command::Help) => {
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("palisade-demo: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let app = Arc::new(api::App::new(data::Dataset::generate()));
    let running = match server::start(&listen, app, WORKERS) {
        Ok(running) => running,
        Err(message) => {
            eprintln!("palisade-demo: {message}");
            return ExitCode::FAILURE;
        }
    };

    // The one line scripts wait for; flushed because stdout is usually a
    // pipe (block-buffered) when a harness reads it.
    let mut stdout = std::io::stdout().lock();
    let announced =
        writeln!(stdout, "listening on http://{}", running.addr()).and_then(|()| stdout.flush());
    drop(stdout);
    if let Err(e) = announced {
        // Keep serving: a caller that closed our stdout may still use the API.
        eprintln!("palisade-demo: cannot write to stdout: {e}");
    }

    running.wait();
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn api_defaults_to_port_8080() {
        assert_eq!(
            parse(&["api"]),
            Ok(Command::Api {
                listen: "127.0.0.1:8080".to_string()
            })
        );
    }

    #[test]
    fn listen_in_both_spellings() {
        let want = Ok(Command::Api {
            listen: "127.0.0.1:0".to_string(),
        });
        assert_eq!(parse(&["api", "--listen", "127.0.0.1:0"]), want);
        assert_eq!(parse(&["api", "--listen=127.0.0.1:0"]), want);
    }

    #[test]
    fn help() {
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
        assert_eq!(parse(&["api", "-h"]), Ok(Command::Help));
    }

    #[test]
    fn token_count() {
        let Ok(Command::Token(req)) = parse(&["token", "--count", "10000", "--ttl", "3600"]) else {
            panic!("not a token command");
        };
        assert_eq!((req.count, req.ttl_seconds), (Some(10000), 3600));
        let Ok(Command::Token(one)) = parse(&["token"]) else {
            panic!("not a token command");
        };
        assert_eq!(one.count, None, "without --count, one token and no jti");
        for args in [
            &["token", "--count"][..],
            &["token", "--count", "-1"],
            &["token", "--count", "x"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        for args in [
            &[][..],
            &["serve"],
            &["api", "--port", "80"],
            &["api", "--listen"],
            &["api", "--listen="],
            &["api", "extra"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
