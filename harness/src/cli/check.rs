//! `palisade check`: request cases through the real `.wasm` in the harness.

use super::{FilterArgs, WasmArgs};
use palisade_harness::cases;
use palisade_harness::host::{FakeClock, FilterModule, SharedSpace, Vm};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    wasm: WasmArgs,
    /// TEST-ONLY keys the cases mint tokens with.
    #[arg(long, default_value = "envoy/test-keys")]
    keys: PathBuf,
    /// Case files (YAML) or directories of them.
    #[arg(required = true)]
    cases: Vec<PathBuf>,
}

/// Seconds since the epoch on the wall clock.
pub fn wall_clock_secs() -> u64 {
    use palisade_harness::host::Clock;
    palisade_harness::host::SystemClock.now().as_secs()
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    let config = args.filter.config_bytes()?;
    let module = FilterModule::load(&args.wasm.wasm)?;
    let all = cases::load_all(&args.cases)?;
    let now = wall_clock_secs();
    let clock = FakeClock::at(Duration::from_secs(now));
    let mut vm = Vm::start(&module, &config, clock.clone(), SharedSpace::new())
        .map_err(|e| format!("{}: {e}", args.filter.config.display()))?;
    let (mut passed, mut failed) = (0, 0);
    for case in &all {
        let at = case.clock.unwrap_or(now);
        clock.set(Duration::from_secs(at));
        let seen = case.run(&mut vm, &args.keys, at)?;
        let repro = repro(&args, case);
        match case.check(&seen, &repro) {
            Ok(()) => {
                passed += 1;
                println!("PASS {} ({})", case.file.display(), case.description);
            }
            Err(report) => {
                failed += 1;
                println!("{report}");
            }
        }
        if vm.is_dead() {
            // As in Envoy: a trapped VM is gone; start a fresh one for the rest.
            vm = Vm::start(&module, &config, clock.clone(), SharedSpace::new())
                .map_err(|e| e.to_string())?;
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The one command that reruns `case` alone.
fn repro(args: &Args, case: &cases::Case) -> String {
    let mut cmd = format!("palisade check --config {}", args.filter.config.display());
    for p in &args.filter.policies {
        cmd.push_str(&format!(" --policy {}", p.display()));
    }
    cmd.push_str(&format!(" {}", case.file.display()));
    cmd
}
