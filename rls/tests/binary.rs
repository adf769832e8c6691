//! The `palisade-rls` binary: flags, config errors, a real run.

// Test code: a failed expectation is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use palisade_rls::proto::rate_limit_response::Code;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_palisade-rls");

fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-rls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

/// Kills the child on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_bad_config_is_refused_naming_the_field() {
    let path = write_config(
        "bad.json",
        r#"{"domain": "d", "limits": [{"name": "a", "max_value": 1, "seconds": 1, "charge": "sometimes"}]}"#,
    );
    let out = Command::new(BIN)
        .args([
            "--config",
            path.to_str().expect("utf-8 path"),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run palisade-rls");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("limits[0].charge"), "{stderr}");
    assert!(stderr.contains("sometimes"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(BIN).output().expect("run palisade-rls");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config is required"));
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run palisade-rls");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--redis-timeout-ms"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_envoy_rls_over_h2c() {
    let redis = Redis::start();
    let path = write_config(
        "good.json",
        r#"{"domain": "palisade", "limits": [
            {"name": "bulk", "match": {"limit": "customer-bulk"}, "identity": "identity",
             "max_value": 1, "seconds": 60}
        ]}"#,
    );
    let port = free_port();
    let mut child = Command::new(BIN)
        .args([
            "--config",
            path.to_str().expect("utf-8 path"),
            "--redis",
            &redis.url(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--redis-timeout-ms",
            "100",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start palisade-rls");
    let stderr = child.stderr.take().expect("stderr");
    let _running = Running(child);

    // Startup logs one line, then the Redis connection.
    let mut lines = BufReader::new(stderr).lines();
    let first = lines.next().expect("a startup line").expect("utf-8");
    assert!(
        first.contains(&format!("listening on 127.0.0.1:{port}")),
        "{first}"
    );
    assert!(first.contains("1 limit(s)"), "{first}");
    let second = lines.next().expect("a connect line").expect("utf-8");
    assert!(second.contains("connected to redis"), "{second}");

    let mut c = Client::connect(format!("127.0.0.1:{port}").parse().expect("addr")).await;
    let who = desc(&[("limit", "customer-bulk"), ("identity", "alice")]);
    let r = c.ok(request("palisade", vec![who.clone()], 0)).await;
    assert_eq!(overall(&r), Code::Ok);
    let r = c.ok(request("palisade", vec![who], 0)).await;
    assert_eq!(overall(&r), Code::OverLimit);
    tokio::time::sleep(Duration::from_millis(10)).await;
}
