//! `palisade`: the command line for policy authors and platform engineers.
//!
//! Every subcommand runs the same code the filter runs: `eval` the decision
//! core, `check` and `serve` the real `palisade_filter.wasm` in the harness.

use clap::Parser;
use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("palisade: {message}");
            ExitCode::from(2)
        }
    }
}
