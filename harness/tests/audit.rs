//! The audit chain in the real `.wasm`: one chain per VM, continued across
//! a VM reload through shared data, and `palisade audit verify` on it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use palisade_harness::host::{FakeClock, HttpRequest, SharedSpace, UpstreamResponse, Vm};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const NOW: u64 = 1_700_000_000;

fn health() -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        path: "/health".into(),
        authority: "customers.internal".into(),
        scheme: "http".into(),
        peer: "10.0.0.9:4000".into(),
        ..HttpRequest::default()
    }
}

/// Every audit record `vm` writes for `n` requests.
fn records(vm: &mut Vm, n: usize) -> Vec<Value> {
    (0..n)
        .flat_map(|_| {
            vm.handle(&health(), &mut |_| UpstreamResponse::default())
                .audit_records()
        })
        .collect()
}

#[test]
fn a_reloaded_vm_continues_the_chain_from_the_last_head() {
    let shared = SharedSpace::new();
    let clock = FakeClock::at(Duration::from_secs(NOW));
    let config = support::demo_config().to_string().into_bytes();
    let mut old = Vm::start(support::module(), &config, clock.clone(), shared.clone()).unwrap();
    let first = records(&mut old, 3);
    assert_eq!(first[0]["event"], "chain_reset");
    assert_eq!(first[0]["previous"], Value::Null);
    assert_eq!(first.len(), 4);
    let last = first.last().unwrap().clone();
    // Another worker's VM runs meanwhile, on its own chain.
    let mut other = Vm::start(support::module(), &config, clock.clone(), shared.clone()).unwrap();
    let theirs = records(&mut other, 1);
    assert_ne!(theirs[0]["chain_id"], last["chain_id"]);
    assert_eq!(theirs[0]["previous"], Value::Null);

    old.shutdown().unwrap();
    let mut new = Vm::start(support::module(), &config, clock, shared).unwrap();
    let next = records(&mut new, 1);
    assert_eq!(next[0]["event"], "chain_reset");
    assert_eq!(next[0]["previous"]["chain_id"], last["chain_id"]);
    assert_eq!(next[0]["previous"]["seq"], last["seq"]);
    assert_eq!(next[0]["previous"]["hash"], last["hash"]);
    assert_eq!(next[1]["labels"]["id"], next[0]["chain_id"]);
}

#[test]
fn the_cli_verifies_the_wasms_chain_and_names_each_problem() {
    let shared = SharedSpace::new();
    let clock = FakeClock::at(Duration::from_secs(NOW));
    let config = support::demo_config().to_string().into_bytes();
    let mut vm = Vm::start(support::module(), &config, clock, shared).unwrap();
    let lines: Vec<String> = records(&mut vm, 5)
        .iter()
        .map(|r| {
            let text = String::from_utf8(palisade_core::audit::canonical::to_vec(r)).unwrap();
            format!(
                "[info][wasm] wasm log palisade palisade palisade: {}{text}",
                palisade_filter::audit_log::PREFIX
            )
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("palisade-audit-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let verify = |name: &str, lines: &[String], extra: &[&str]| {
        let file = dir.join(name);
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["audit", "verify"])
            .arg(&file)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = verify("ok.log", &lines, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok: 6 records in 1 chain(s)"), "{out}");

    // The newest records cut away leave a valid shorter chain: only a
    // trusted head shows the loss.
    let last: Value = serde_json::from_str(
        lines[5]
            .split_once(palisade_filter::audit_log::PREFIX)
            .unwrap()
            .1,
    )
    .unwrap();
    let head = format!(
        "{}:{}:{}",
        last["chain_id"].as_str().unwrap(),
        last["seq"],
        last["hash"].as_str().unwrap()
    );
    let (code, out) = verify("cut.log", &lines[..4], &["--head", &head]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("cut.log:4: truncated") && out.contains("seqs 4..=5 are missing"),
        "{out}"
    );
    let (code, out) = verify("ok.log", &lines, &["--head", &head]);
    assert_eq!(code, Some(0), "{out}");

    let (code, out) = verify("ok.log", &lines, &["--head", "nonsense"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("expected CHAIN:SEQ:HASH"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn signed_heads_let_a_verifier_with_only_the_public_key_vouch_for_the_chain() {
    use base64::Engine as _;
    let seed = [7u8; 32];
    let b64 = base64::engine::general_purpose::STANDARD;
    let public =
        palisade_core::audit::sign::Signing::new(seed, None, Duration::from_secs(1)).public_key();
    let mut config = support::demo_config();
    config["audit"] =
        serde_json::json!({"signing": {"private_key": b64.encode(seed), "interval_seconds": 1}});
    let config = config.to_string().into_bytes();
    let clock = FakeClock::at(Duration::from_secs(NOW));
    let mut vm = Vm::start(
        support::module(),
        &config,
        clock.clone(),
        SharedSpace::new(),
    )
    .unwrap();
    records(&mut vm, 3);
    clock.advance(Duration::from_secs(2));
    vm.tick().unwrap();
    records(&mut vm, 2);
    let dir = std::env::temp_dir().join(format!("palisade-audit-sign-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("signed.log");
    let save = |vm: &Vm| {
        let lines: Vec<String> = vm
            .logs()
            .iter()
            .filter(|l| l.message.starts_with(palisade_filter::audit_log::PREFIX))
            .map(|l| {
                format!(
                    "[info][wasm] wasm log palisade palisade palisade: {}",
                    l.message
                )
            })
            .collect();
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        lines
    };
    let verify = |key: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["audit", "verify", "--public-key", key])
            .arg(&file)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let lines = save(&vm);
    assert!(
        lines.iter().any(|l| l.contains("\"event\":\"chain_head\"")),
        "a signed head was written"
    );
    // While the chain runs, its newest records are not signed yet: said so.
    let (code, out) = verify(&public);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("unsigned_tail") && out.contains("seqs 5..=6"),
        "{out}"
    );
    // Shutting the plugin down signs the tail: all of it is vouched for.
    vm.shutdown().unwrap();
    save(&vm);
    let (code, out) = verify(&public);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("signed through 6"), "{out}");
    let other = palisade_core::audit::sign::Signing::new([8; 32], None, Duration::from_secs(1))
        .public_key();
    let (code, out) = verify(&other);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("bad_signature") && out.contains("unsigned"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
