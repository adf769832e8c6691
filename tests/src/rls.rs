//! The fleet-wide limits' dependencies, as real processes on loopback: a
//! `redis-server` (Debian's package) that a test can kill, restart on the
//! same port and pause, and the `palisade-rls` binary (`rls/`, its own
//! Cargo workspace) in front of it.
//!
//! Each process has its own temp dir holding its log, kept when a test
//! fails. Readiness is a real answer (Redis `PING`, a TCP accept on the
//! service's port), never a sleep.

use crate::envoy::free_port;
use base64::Engine;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static INSTANCE: AtomicU32 = AtomicU32::new(0);

/// A fresh temp dir for one process (`palisade-<what>-<pid>-<n>`).
fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "palisade-{what}-{}-{}",
        std::process::id(),
        INSTANCE.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Sends `sig` (`-STOP`, `-CONT`, ...) to `pid`.
fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// A `redis-server` on 127.0.0.1 without persistence (`--save ''
/// --appendonly no`): a restart starts it empty. Killed on drop.
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl Redis {
    /// Starts it on a free port and waits until it answers `PING`.
    pub fn start() -> Redis {
        let mut redis = Redis {
            port: free_port(),
            dir: temp_dir("redis"),
            child: None,
            paused: false,
        };
        redis.spawn();
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))
            .unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "start redis-server (Debian package redis-server; scripts/setup.sh installs it)",
            );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ping() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                self.child = None;
                panic!(
                    "redis-server on port {} exited with {status}; its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on port {} within 10 s; its log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it answers `PING` within half a second.
    pub fn ping(&self) -> bool {
        self.try_command(&["PING"], Duration::from_millis(500))
            .is_ok_and(|r| r == Resp::Simple("PONG".into()))
    }

    /// Whether the process is running (paused counts as running).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: gone at once, with its data (it keeps none on disk).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// Starts it again on the same port, empty, and waits for `PING`.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// SIGSTOP: its connections stay open and nothing answers.
    pub fn pause(&mut self) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        assert!(signal(pid, "-STOP"), "kill -STOP {pid}");
        self.paused = true;
    }

    /// SIGCONT after [`Redis::pause`].
    pub fn resume(&mut self) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        assert!(signal(pid, "-CONT"), "kill -CONT {pid}");
        self.paused = false;
    }

    /// Runs one command (a 5 s read timeout); panics on an I/O error.
    pub fn command(&self, args: &[&str]) -> Resp {
        self.try_command(args, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("redis {args:?} on port {}: {e}", self.port))
    }

    fn try_command(&self, args: &[&str], timeout: Duration) -> std::io::Result<Resp> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(timeout))?;
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            req.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
        stream.write_all(&req)?;
        Resp::read(&mut BufReader::new(stream))
    }

    /// Every key matching the glob `pattern` (`KEYS`: fine for a test's
    /// handful of keys).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        match self.command(&["KEYS", pattern]) {
            Resp::Array(items) => items
                .into_iter()
                .filter_map(|r| match r {
                    Resp::Bulk(Some(k)) => Some(k),
                    _ => None,
                })
                .collect(),
            other => panic!("KEYS {pattern}: {other:?}"),
        }
    }

    /// The count of the Limitador counter of limit `limit` (the RLS
    /// config's `name`) for identity value `identity` (a pseudonym), or
    /// `None` when there is none. Its key holds both (rls/README.md,
    /// "Redis keys").
    pub fn counter(&self, limit: &str, identity: &str) -> Option<u64> {
        let keys: Vec<String> = self
            .keys(&format!("*counter:*{limit}*"))
            .into_iter()
            .filter(|k| k.contains(&format!("\"identity\":\"{identity}\"")))
            .collect();
        assert!(
            keys.len() <= 1,
            "one counter per limit and identity, got {keys:?}"
        );
        let key = keys.first()?;
        match self.command(&["GET", key]) {
            Resp::Bulk(Some(n)) => Some(n.parse().expect("a counter is an integer")),
            Resp::Bulk(None) => None,
            other => panic!("GET {key}: {other:?}"),
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if self.paused {
            // A stopped process still dies of SIGKILL; resuming first lets
            // its clients see a clean close.
            if let Some(child) = &self.child {
                signal(child.id(), "-CONT");
            }
        }
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("redis-server files kept in {}", self.dir.display());
        }
    }
}

/// A Redis reply (RESP2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
    Array(Vec<Resp>),
}

impl Resp {
    fn read(r: &mut impl BufRead) -> std::io::Result<Resp> {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end_matches("\r\n");
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, line.to_owned());
        let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
        let n = || rest.parse::<i64>().map_err(|_| bad());
        Ok(match kind {
            "+" => Resp::Simple(rest.to_owned()),
            "-" => Resp::Error(rest.to_owned()),
            ":" => Resp::Integer(n()?),
            "$" if n()? < 0 => Resp::Bulk(None),
            "$" => {
                let mut buf = vec![0; n()? as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(buf.len() - 2);
                Resp::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
            "*" if n()? < 0 => Resp::Array(Vec::new()),
            "*" => Resp::Array(
                (0..n()?)
                    .map(|_| Resp::read(r))
                    .collect::<std::io::Result<_>>()?,
            ),
            _ => return Err(bad()),
        })
    }
}

/// The `palisade-rls` binary: `$PALISADE_RLS_BIN`, else the release build
/// in `rls/target`. Panics with the build command when it is missing.
pub fn binary() -> PathBuf {
    let path = std::env::var_os("PALISADE_RLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo().join("rls/target/release/palisade-rls"));
    assert!(
        path.exists(),
        "{} is missing; build it first (rls/ is its own Cargo workspace):\n  \
         cargo build --release --manifest-path rls/Cargo.toml --locked\n\
         or point PALISADE_RLS_BIN at a palisade-rls binary",
        path.display()
    );
    path
}

/// The `palisade-rls` rate limit service, on a free loopback port, with its
/// counters in Redis. Killed on drop.
pub struct Rls {
    pub port: u16,
    dir: PathBuf,
    redis_url: String,
    redis_timeout_ms: u64,
    child: Option<Child>,
}

impl Rls {
    /// Starts it with the limits file `config` (rls/README.md, "Config")
    /// and `--redis-timeout-ms redis_timeout_ms`, and waits until its port
    /// accepts connections. It needs no Redis to start.
    pub fn start(config: &Value, redis_url: &str, redis_timeout_ms: u64) -> Rls {
        let dir = temp_dir("rls");
        std::fs::write(
            dir.join("limits.json"),
            serde_json::to_string_pretty(config).unwrap(),
        )
        .unwrap();
        let mut rls = Rls {
            port: free_port(),
            dir,
            redis_url: redis_url.to_owned(),
            redis_timeout_ms,
            child: None,
        };
        rls.spawn();
        rls
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "palisade-rls is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rls.log"))
            .unwrap();
        let child = Command::new(binary())
            .arg("--config")
            .arg(self.dir.join("limits.json"))
            .args(["--redis", &self.redis_url])
            .args(["--listen", &self.addr()])
            .args(["--redis-timeout-ms", &self.redis_timeout_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start palisade-rls");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                self.child = None;
                panic!(
                    "palisade-rls exited with {status}; its log:\n{}",
                    self.log()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "palisade-rls not listening on port {} after 20 s; its log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// SIGKILL: its port refuses connections at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, with the same flags.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// Its stderr so far (one line at startup, one per Redis (re)connection
    /// and per storage error).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("rls.log")).unwrap_or_default()
    }
}

impl Drop for Rls {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("palisade-rls files kept in {}", self.dir.display());
        }
    }
}

/// The service's domain the filter sends by default.
pub const DOMAIN: &str = "palisade";

/// One limit of the RLS config for filter rule `rule` and descriptor kind
/// `kind` (`requests`, `records` or `suspension`), named `<rule>-<kind>`,
/// counted per `identity` entry. Records and suspensions are charged
/// `always` (delivered records count even past the budget; one hit
/// suspends), as the filter requires (palisade_core::ratelimit::global).
pub fn limit(rule: &str, kind: &str, max_value: u64, seconds: u64) -> Value {
    let mut limit = json!({
        "name": format!("{rule}-{kind}"),
        "match": {"limit": rule, "kind": kind},
        "identity": "identity",
        "max_value": max_value,
        "seconds": seconds,
    });
    if kind != "requests" {
        limit["charge"] = json!("always");
    }
    limit
}

/// An RLS config in [`DOMAIN`] with `limits`.
pub fn limits(limits: Vec<Value>) -> Value {
    json!({"domain": DOMAIN, "limits": limits})
}

/// A TEST-ONLY `global.identity_key`: 32 fixed bytes, base64.
pub fn test_identity_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(b"palisade-e2e-TEST-ONLY-identity!")
}

/// What the service sees as `identity` under `rule` (e.g. `sub=alice`),
/// for reading its counters in Redis.
pub fn pseudonym(identity_key: &str, rule: &str, identity: &str) -> String {
    palisade_core::ratelimit::global::IdentityKey::from_base64(identity_key)
        .unwrap()
        .pseudonym(rule, identity)
}
