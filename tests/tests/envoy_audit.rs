//! The audit trail through real Envoy: every request recorded exactly once
//! with the right reason, no secret in any log line, and a hash chain that
//! `palisade audit verify` accepts untouched and rejects, at the right
//! position, after each kind of tampering.

use palisade_tests::envoy::{Envoy, Listener};
use palisade_tests::upstream::Upstream;
use palisade_tests::{demo_config, http, keys, repo, tokens};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A request to send: path, headers, the status and reason it must get.
type Probe<'a> = (String, Vec<(&'a str, String)>, u16, &'a str);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(at: u64, claims: Value) -> String {
    let key = tokens::key(&keys(), "rs256").unwrap();
    key.mint(&tokens::claims(at, &claims)).unwrap()
}

/// The `palisade` CLI, as built by `cargo test --workspace` (scripts/test.sh).
fn palisade() -> PathBuf {
    let bin = repo().join("target/debug/palisade");
    assert!(
        bin.exists(),
        "{} is missing; build it: cargo build -p palisade-harness",
        bin.display()
    );
    bin
}

/// Runs `palisade audit verify FILE`; its exit code and output.
fn verify(file: &Path) -> (i32, String) {
    let out = Command::new(palisade())
        .args(["audit", "verify"])
        .arg(file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn every_request_is_audited_once_secrets_never_and_tampering_is_found() {
    let up = Upstream::start();
    let mut config = demo_config();
    config["audit"] = json!({
        "personal_data": [{"path_prefix": "/api/v1/customers", "category": "customer_pii"}],
        "labels": {"env": "e2e"}
    });
    config["rate_limits"] = json!([{
        "name": "customer-bulk",
        "match": {"path_prefix": "/api/v1/customers", "methods": ["GET"]},
        "requests": {"limit": 60, "period_seconds": 60, "burst": 2},
        "records": {"limit": 1000, "period_seconds": 300, "count": {"json_array": "/items"}},
        "max_page_size": {"param": "limit", "max": 500}
    }]);
    // One worker, so one chain: positions in the log are predictable.
    let envoy = Envoy::start_with_workers(up.port, &[Listener::new("audited", config)], 1);
    let port = envoy.port("audited");

    let t = now();
    let alice = token(
        t,
        json!({"sub": "alice", "roles": ["customer"], "customer_id": "42"}),
    );
    let expired = token(
        t - 3_600,
        json!({"sub": "alice", "roles": ["customer"], "customer_id": "42"}),
    );
    let export = token(
        t,
        json!({"sub": "data-export", "scope": "customers:export"}),
    );
    let bearer = |tok: &str| format!("Bearer {tok}");
    let secret_query = format!("access_token={alice}&api_key=s3cret-api-key");
    let requests: Vec<Probe> = vec![
        ("/health".into(), vec![], 200, "allowed"),
        (
            format!("/api/v1/customers/42?{secret_query}"),
            vec![
                ("authorization", bearer(&alice)),
                ("cookie", "session=c00kie-secret".into()),
            ],
            200,
            "allowed",
        ),
        (
            "/api/v1/customers/43".into(),
            vec![("authorization", bearer(&alice))],
            403,
            "policy_denied",
        ),
        (
            "/api/v1/customers/42".into(),
            vec![("authorization", bearer(&expired))],
            401,
            "token_expired",
        ),
        (
            "/api/v1/customers?limit=10".into(),
            vec![("authorization", bearer(&export))],
            200,
            "allowed",
        ),
        (
            "/api/v1/customers?limit=10".into(),
            vec![("authorization", bearer(&export))],
            200,
            "allowed",
        ),
        (
            "/api/v1/customers?limit=10".into(),
            vec![("authorization", bearer(&export))],
            429,
            "rate_limited",
        ),
        (
            "/api/v1/customers?limit=100000".into(),
            vec![("authorization", bearer(&export))],
            400,
            "page_size",
        ),
    ];
    for (path, headers, status, _) in &requests {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = http::get(port, path, &h);
        assert_eq!(r.status, *status, "{path}: {r:?}");
    }

    // Every request exactly once, in order, with its reason and status.
    let deadline = Instant::now() + Duration::from_secs(10);
    while envoy.decisions().len() < requests.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // A late duplicate would show up after the count was first reached.
    std::thread::sleep(Duration::from_secs(1));
    let decisions = envoy.decisions();
    assert_eq!(
        decisions.len(),
        requests.len(),
        "exactly one record per request"
    );
    let seen: Vec<(&str, u64)> = decisions
        .iter()
        .map(|d| {
            (
                d["reason"].as_str().unwrap(),
                d["http_status"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(&str, u64)> = requests
        .iter()
        .map(|(_, _, status, reason)| (*reason, u64::from(*status)))
        .collect();
    assert_eq!(seen, expected, "{decisions:#?}");
    let mut ids: Vec<&str> = decisions
        .iter()
        .map(|d| d["decision_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), requests.len(), "one record per request");
    // OPA's fields, and Palisade's.
    let read = &decisions[1];
    assert_eq!(read["path"], "envoy/authz/decision");
    assert_eq!(read["labels"]["env"], "e2e");
    assert_eq!(
        (read["personal_data"].as_bool(), read["category"].as_str()),
        (Some(true), Some("customer_pii"))
    );
    assert_eq!(read["subject"], "alice");
    assert_eq!(
        read["input"]["attributes"]["request"]["http"]["method"],
        "GET"
    );
    assert_eq!(decisions[0]["personal_data"], false);
    assert_eq!(decisions[4]["records"], 10);
    assert_eq!(decisions[4]["truncated"], false);

    // The counters moved as the requests went.
    let m = |series: &str| envoy.metric(series);
    assert_eq!(
        m(r#"palisade_requests{decision="allow",reason="allowed"}"#),
        4.0
    );
    assert_eq!(
        m(r#"palisade_requests{decision="deny",reason="policy_denied"}"#),
        1.0
    );
    assert_eq!(
        m(r#"palisade_requests{decision="deny",reason="token_expired"}"#),
        1.0
    );
    assert_eq!(
        m(r#"palisade_requests{decision="deny",reason="page_size"}"#),
        1.0
    );
    assert_eq!(m(r#"palisade_token_failures{reason="token_expired"}"#), 1.0);
    assert_eq!(m(r#"palisade_rate_limited{reason="rate_limited"}"#), 1.0);
    assert_eq!(
        m("palisade_records_returned{}"),
        21.0,
        "1 + 10 + 10 records"
    );
    assert_eq!(m("palisade_audit_records{}"), (requests.len() + 1) as f64);
    // Histograms reach the admin page at Envoy's next stats flush (5 s).
    let deadline = Instant::now() + Duration::from_secs(12);
    while m("palisade_evaluation_us_count{}") < 5.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        m("palisade_evaluation_us_count{}"),
        5.0,
        "the policy ran 5 times"
    );
    assert_eq!(
        m("palisade_verification_us_count{}"),
        7.0,
        "7 requests carried a token"
    );

    // No token, Authorization header, cookie or secret query value, anywhere.
    let log = envoy.log();
    for secret in [
        alice.as_str(),
        expired.as_str(),
        export.as_str(),
        "Bearer ",
        "s3cret-api-key",
        "c00kie-secret",
    ] {
        assert!(
            !log.contains(secret),
            "{secret:.20}... appears in Envoy's log"
        );
    }

    // The chain verifies untouched, and each kind of tampering is found where it is.
    let dir = std::env::temp_dir().join(format!("palisade-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lines: Vec<String> = log.lines().map(str::to_owned).collect();
    let audit: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains(palisade_filter::audit_log::PREFIX))
        .collect();
    assert!(
        audit.len() > requests.len(),
        "a chain_reset and the decisions"
    );
    let write = |name: &str, lines: &[String], end: &str| {
        let path = dir.join(name);
        std::fs::write(&path, lines.join("\n") + end).unwrap();
        path
    };
    let (code, out) = verify(&write("untouched.log", &lines, "\n"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: "), "{out}");

    let at = |i: usize| format!("{}:", i + 1);
    let cases: Vec<(&str, Vec<String>, &str, String, &str)> = {
        let (a, b, c) = (audit[2], audit[3], audit[4]);
        let mut changed = lines.clone();
        changed[b] = changed[b].replacen("\"reason\":\"", "\"reason\":\"x", 1);
        let mut deleted = lines.clone();
        deleted.remove(b);
        let mut swapped = lines.clone();
        swapped.swap(b, c);
        let mut inserted = lines.clone();
        inserted.insert(a, lines[c].clone());
        let mut cut = lines.clone();
        let last = *audit.last().unwrap();
        cut.truncate(last + 1);
        let keep = cut[last].len() - 30;
        cut[last].truncate(keep);
        vec![
            ("changed", changed, "\n", at(b), "modified"),
            // The record after the gap is at the deleted one's index now.
            ("deleted", deleted, "\n", at(b), "deleted"),
            ("swapped", swapped, "\n", at(b), "reordered"),
            ("inserted", inserted, "\n", at(a), "inserted"),
            ("truncated", cut, "", at(last), "truncated"),
        ]
    };
    for (name, tampered, end, position, kind) in cases {
        let file = write(&format!("{name}.log"), &tampered, end);
        let (code, out) = verify(&file);
        assert_eq!(code, 1, "{name}: {out}");
        let expect = format!("{}:{position} {kind}", file.display());
        assert!(
            out.contains(&expect),
            "{name}: expected `{expect}` in:\n{out}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
