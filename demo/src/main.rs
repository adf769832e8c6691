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

mod api;
mod data;
mod server;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

/// Address used when `--listen` is not given.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Worker threads: enough to overlap a few slow clients, few enough for a
/// 2-core CI machine that also runs Envoy.
const WORKERS: usize = 4;

const USAGE: &str = "usage: palisade-demo api [--listen ADDR]

Serves the demo customer-data API (default ADDR 127.0.0.1:8080; port 0 picks
a free port). Prints `listening on http://HOST:PORT` once bound.";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Api { listen: String },
    Help,
}

/// Parses the arguments after the program name. `Err` carries the message
/// printed above the usage text.
fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut args = args.into_iter();
    match args.next().as_deref() {
        Some("api") => {}
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

fn main() -> ExitCode {
    let listen = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Api { listen }) => listen,
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
