//! `palisade-rls --config limits.json [--redis URL] [--listen ADDR] [--redis-timeout-ms N]`

use palisade_rls::{Config, RateLimiter, StorageOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "\
usage: palisade-rls --config FILE [--redis URL] [--listen ADDR] [--redis-timeout-ms N]

  --config FILE          limits, JSON (see rls/README.md)
  --redis URL            Redis for the counters      [default: redis://127.0.0.1:6379]
  --listen ADDR          gRPC (h2c) listen address   [default: 127.0.0.1:8081]
  --redis-timeout-ms N   deadline for one request's Redis work; past it the
                         request is answered UNAVAILABLE [default: 50]";

/// How long startup waits for a first Redis connection before serving
/// anyway (each request then tries again).
const STARTUP_CONNECT: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Args {
    config: PathBuf,
    redis: String,
    listen: SocketAddr,
    timeout: Duration,
}

/// `Err("")` asks for the usage text.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut config = None;
    let mut redis = "redis://127.0.0.1:6379".to_owned();
    let mut listen = "127.0.0.1:8081".to_owned();
    let mut timeout_ms = "50".to_owned();
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Err(String::new());
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg, None),
        };
        let slot = match flag.as_str() {
            "--config" => config.insert(String::new()),
            "--redis" => &mut redis,
            "--listen" => &mut listen,
            "--redis-timeout-ms" => &mut timeout_ms,
            _ => return Err(format!("unknown argument {flag:?}")),
        };
        *slot = inline
            .or_else(|| args.next())
            .ok_or_else(|| format!("{flag} needs a value"))?;
    }
    let config = PathBuf::from(config.ok_or("--config is required")?);
    let listen = listen
        .parse()
        .map_err(|e| format!("--listen {listen:?}: {e}"))?;
    let timeout_ms: u64 = timeout_ms
        .parse()
        .map_err(|e| format!("--redis-timeout-ms {timeout_ms:?}: {e}"))?;
    if timeout_ms == 0 {
        return Err("--redis-timeout-ms must be at least 1".to_owned());
    }
    Ok(Args {
        config,
        redis,
        listen,
        timeout: Duration::from_millis(timeout_ms),
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn run(args: Args) -> Result<(), String> {
    let config = Config::load(&args.config).map_err(|e| format!("config {e}"))?;
    let options = StorageOptions {
        redis_url: args.redis.clone(),
        timeout: args.timeout,
    };
    let limiter = Arc::new(RateLimiter::new(&config, options)?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    eprintln!(
        "palisade-rls: listening on {local} (gRPC, h2c); domain {:?}, {} limit(s) from {}; redis {}, timeout {} ms",
        config.domain,
        config.limits.len(),
        args.config.display(),
        args.redis,
        args.timeout.as_millis()
    );
    if let Err(e) = limiter.connect_now(STARTUP_CONNECT).await {
        eprintln!(
            "palisade-rls: redis not reachable at startup ({e}); each request will try again"
        );
    }
    palisade_rls::serve(listener, limiter, shutdown_signal())
        .await
        .map_err(|e| format!("serving: {e}"))?;
    eprintln!("palisade-rls: stopped");
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("palisade-rls: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("palisade-rls: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palisade-rls: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn defaults_and_forms() {
        let a = parse(&["--config", "l.json"]).unwrap();
        assert_eq!(a.config, PathBuf::from("l.json"));
        assert_eq!(a.redis, "redis://127.0.0.1:6379");
        assert_eq!(a.listen, "127.0.0.1:8081".parse::<SocketAddr>().unwrap());
        assert_eq!(a.timeout, Duration::from_millis(50));
        let a = parse(&[
            "--config=l.json",
            "--redis-timeout-ms=7",
            "--listen",
            "127.0.0.1:0",
        ])
        .unwrap();
        assert_eq!(a.timeout, Duration::from_millis(7));
        assert_eq!(a.listen.port(), 0);
    }

    #[test]
    fn errors() {
        assert!(parse(&[]).unwrap_err().contains("--config"));
        assert!(parse(&["--config"]).unwrap_err().contains("needs a value"));
        assert!(parse(&["--config", "x", "--bogus", "1"])
            .unwrap_err()
            .contains("--bogus"));
        assert!(parse(&["--config", "x", "--redis-timeout-ms", "0"]).is_err());
        assert_eq!(parse(&["--help"]).err().as_deref(), Some(""));
    }
}
