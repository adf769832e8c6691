//! `palisade audit verify`: checks the hash chains of audit records in log
//! files (Envoy's log as it is, or the records alone).

use palisade_core::audit::chain::Head;
use palisade_core::audit::sign::key_bytes;
use palisade_core::audit::verify::{verify, Line};
use palisade_filter::audit_log::PREFIX;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Verify the audit chains in FILEs: report, with its position, every
    /// modified, deleted, reordered or inserted record, and a truncated tail.
    /// Exits 1 when anything is wrong.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Log files, in the order they were written (rotated files oldest first).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// A chain head you trust, `CHAIN:SEQ:HASH` (from the collector or a
    /// signed checkpoint): records after the end of the files up to it are
    /// reported as a truncated tail. Repeatable.
    #[arg(long = "head", value_name = "CHAIN:SEQ:HASH")]
    heads: Vec<String>,
    /// An Ed25519 public key of `audit.signing` (32 bytes, base64, or a
    /// file holding that); repeat it across a key rotation. Every chain must
    /// carry a signed head that verifies and matches its record, and records
    /// after a chain's newest signed head are reported.
    #[arg(long = "public-key", value_name = "KEY")]
    public_keys: Vec<String>,
}

pub fn run(command: Command) -> Result<ExitCode, String> {
    let Command::Verify(args) = command;
    let heads = args
        .heads
        .iter()
        .map(|h| Head::parse(h).ok_or_else(|| format!("--head {h}: expected CHAIN:SEQ:HASH")))
        .collect::<Result<Vec<_>, _>>()?;
    let public_keys = args
        .public_keys
        .iter()
        .map(|k| {
            let text = std::fs::read_to_string(k).unwrap_or_else(|_| k.clone());
            key_bytes(&text).map_err(|e| format!("--public-key: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut texts = Vec::new();
    for file in &args.files {
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        texts.push((
            file.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    let lines = texts.iter().flat_map(|(name, text)| {
        let ends_complete = text.ends_with('\n');
        let count = text.lines().count();
        text.lines().enumerate().map(move |(i, line)| Line {
            position: format!("{name}:{}", i + 1),
            text: line,
            complete: ends_complete || i + 1 < count,
        })
    });
    let report = verify(lines, PREFIX, &heads, &public_keys);
    for f in &report.findings {
        println!("{}: {}: {}", f.position, f.kind, f.message);
    }
    let chains: Vec<String> = report
        .chains
        .iter()
        .map(|(id, (first, last))| match report.signed.get(id) {
            Some(s) => format!("{id} (seq {first}..={last}, signed through {s})"),
            None => format!("{id} (seq {first}..={last})"),
        })
        .collect();
    if report.ok() {
        println!(
            "ok: {} records in {} chain(s): {}",
            report.records,
            chains.len(),
            chains.join(", ")
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "FAILED: {} problem(s) in {} records, {} chain(s)",
            report.findings.len(),
            report.records,
            chains.len()
        );
        Ok(ExitCode::from(1))
    }
}
