//! The shared request cases (`tests/cases/`) through the real `.wasm` in the
//! harness. The same files run through real Envoy in the palisade-tests crate:
//! both must meet the same expectations, so they agree with each other.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use palisade_harness::cases;
use palisade_harness::host::{FakeClock, SharedSpace, Vm};
use std::time::Duration;

const NOW: u64 = 1_700_000_000;

#[test]
fn shared_cases_hold_in_the_harness() {
    let config = support::demo_config().to_string();
    let all = cases::load_all(&[support::repo().join("tests/cases")]).unwrap();
    let keys = support::repo().join("envoy/test-keys");
    let clock = FakeClock::at(Duration::from_secs(NOW));
    let mut vm = Vm::start(
        support::module(),
        config.as_bytes(),
        clock.clone(),
        SharedSpace::new(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    for case in &all {
        let now = case.clock.unwrap_or(NOW);
        clock.set(Duration::from_secs(now));
        let seen = case.run(&mut vm, &keys, now).unwrap();
        let repro = format!(
            "cargo run -p palisade-harness --bin palisade -- check --config envoy/demo-config.json {}",
            case.file.strip_prefix(support::repo()).unwrap_or(&case.file).display()
        );
        if let Err(e) = case.check(&seen, &repro) {
            failures.push(e);
        }
    }
    assert!(!vm.is_dead());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}
