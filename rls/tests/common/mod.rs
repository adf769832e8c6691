//! Test helpers: a real `redis-server` on a free loopback port, the RLS
//! in-process, and a tonic client speaking the hand-written messages.

#![allow(dead_code)]

use palisade_rls::proto::rate_limit_descriptor::Entry;
use palisade_rls::proto::rate_limit_response::{Code, DescriptorStatus};
use palisade_rls::proto::{
    RateLimitDescriptor, RateLimitRequest, RateLimitResponse, SHOULD_RATE_LIMIT_PATH,
};
use palisade_rls::{Config, RateLimiter, StorageOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A `redis-server` child on 127.0.0.1, without persistence; killed on drop.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Self {
        let mut r = Redis {
            port: free_port(),
            child: None,
        };
        r.spawn();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "redis already running");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "start redis-server (Debian package redis-server; scripts/setup.sh installs it)",
            );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it answers PING.
    pub fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Kills it (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty: no persistence).
    pub fn restart(&mut self) {
        self.spawn();
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("redis running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// SIGSTOP: the TCP connection stays open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal("-CONT");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // In case a test stopped it and then failed.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}

/// The RLS served in-process on a free port; stops on drop.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    pub async fn start(config: &str, redis_url: &str, timeout: Duration) -> Self {
        let config = Config::parse(config).expect("test config");
        let options = StorageOptions {
            redis_url: redis_url.to_owned(),
            timeout,
        };
        let limiter = Arc::new(RateLimiter::new(&config, options).expect("limiter"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(palisade_rls::serve(listener, limiter, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A gRPC client for `ShouldRateLimit`.
pub struct Client {
    grpc: tonic::client::Grpc<Channel>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect to the RLS");
        Client {
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    pub async fn call(
        &mut self,
        req: RateLimitRequest,
    ) -> Result<RateLimitResponse, tonic::Status> {
        let call = async {
            self.grpc
                .ready()
                .await
                .map_err(|e| tonic::Status::unknown(format!("not ready: {e}")))?;
            self.grpc
                .unary(
                    tonic::Request::new(req),
                    PathAndQuery::from_static(SHOULD_RATE_LIMIT_PATH),
                    tonic_prost::ProstCodec::<RateLimitRequest, RateLimitResponse>::default(),
                )
                .await
                .map(tonic::Response::into_inner)
        };
        tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("the RLS answered within 5 s")
    }

    /// Calls and expects an answer (not a gRPC error).
    pub async fn ok(&mut self, req: RateLimitRequest) -> RateLimitResponse {
        match self.call(req).await {
            Ok(r) => r,
            Err(s) => panic!("gRPC error {:?}: {}", s.code(), s.message()),
        }
    }
}

/// A descriptor from `(key, value)` pairs.
pub fn desc(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: (*k).to_owned(),
                value: (*v).to_owned(),
            })
            .collect(),
        ..Default::default()
    }
}

/// The same with its own `hits_addend`.
pub fn desc_hits(entries: &[(&str, &str)], hits: u64) -> RateLimitDescriptor {
    RateLimitDescriptor {
        hits_addend: Some(hits),
        ..desc(entries)
    }
}

pub fn request(domain: &str, descriptors: Vec<RateLimitDescriptor>, hits: u32) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.to_owned(),
        descriptors,
        hits_addend: hits,
    }
}

pub fn code(s: &DescriptorStatus) -> Code {
    Code::try_from(s.code).expect("known code")
}

pub fn overall(r: &RateLimitResponse) -> Code {
    Code::try_from(r.overall_code).expect("known code")
}
