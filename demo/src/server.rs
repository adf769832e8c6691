//! The HTTP side: binds a `tiny_http` server and runs a few worker threads
//! that feed requests to [`App::handle`].
//!
//! `tiny_http` is used (rather than tokio/hyper) because a demo backend needs
//! HTTP/1.1 and a handful of threads, not an async runtime; it keeps the
//! build small on machines that also compile the filter.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use tiny_http::{Header, Response, Server};

use crate::api::{App, Reply, RequestInfo};

/// A bound server and its workers.
pub struct Running {
    addr: SocketAddr,
    server: Arc<Server>,
    stopping: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

/// Binds `listen` (anything `ToSocketAddrs` accepts; port 0 picks a free
/// port) and starts `workers` threads serving `app`.
pub fn start(listen: &str, app: Arc<App>, workers: usize) -> Result<Running, String> {
    let server = Server::http(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| format!("{listen} is not an IP address"))?;
    let server = Arc::new(server);
    let stopping = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for n in 0..workers.max(1) {
        let (server, app, stopping) = (server.clone(), app.clone(), stopping.clone());
        let handle = thread::Builder::new()
            .name(format!("worker-{n}"))
            .spawn(move || worker(&server, &app, &stopping))
            .map_err(|e| format!("cannot start worker thread: {e}"))?;
        handles.push(handle);
    }
    Ok(Running {
        addr,
        server,
        stopping,
        workers: handles,
    })
}

impl Running {
    /// The address actually bound (with the real port when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Blocks while the workers serve, i.e. forever unless `shutdown` is
    /// called from elsewhere or the process is killed.
    pub fn wait(self) {
        for worker in self.workers {
            // A worker only ends by panicking, which it is written not to do;
            // either way there is nothing left to do but keep waiting.
            let _ = worker.join();
        }
    }

    /// Stops every worker and waits for them; used by tests so the port is
    /// released before the test ends.
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "the binary serves until it is killed")
    )]
    pub fn shutdown(self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Each call unblocks one worker stuck in `recv`.
        for _ in &self.workers {
            self.server.unblock();
        }
        self.wait();
    }
}

fn worker(server: &Server, app: &App, stopping: &AtomicBool) {
    loop {
        match server.recv() {
            Ok(request) => {
                if let Err(e) = respond(app, request) {
                    // The client went away mid-response: nothing to retry.
                    eprintln!("palisade-demo: write failed: {e}");
                }
            }
            Err(e) => {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                eprintln!("palisade-demo: accept failed: {e}");
            }
        }
    }
}

/// Converts a `tiny_http` request, routes it, and writes the JSON reply.
/// The request body is never read: `tiny_http` drains it when the request
/// is dropped, which keeps keep-alive connections in sync.
fn respond(app: &App, request: tiny_http::Request) -> io::Result<()> {
    let info = RequestInfo {
        method: request.method().as_str().to_string(),
        url: request.url().to_string(),
        headers: request
            .headers()
            .iter()
            .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_string()))
            .collect(),
    };
    let reply = app.handle(&info);
    request.respond(to_response(&reply))
}

fn to_response(reply: &Reply) -> Response<io::Cursor<Vec<u8>>> {
    let mut response = Response::from_data(reply.body_bytes()).with_status_code(reply.status);
    let count = reply.record_count.map(|n| n.to_string());
    let headers = [
        Some(("content-type", reply.content_type())),
        reply.allow.map(|allow| ("allow", allow)),
        count.as_deref().map(|n| ("x-record-count", n)),
    ];
    // Names and values are ASCII, so `from_bytes` cannot fail; a failure
    // would only drop the header, never the response.
    for (name, value) in headers.into_iter().flatten() {
        if let Ok(header) = Header::from_bytes(name, value) {
            response = response.with_header(header);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    /// Sends one HTTP/1.1 request on a fresh connection and returns the
    /// status code, the raw head and the body.
    fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nX-Test: yes\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_string(), body.to_string())
    }

    #[test]
    fn serves_health_and_hits_over_tcp() {
        let app = Arc::new(App::new(Dataset::generate()));
        let running = start("127.0.0.1:0", app, 2).unwrap();
        let addr = running.addr();
        assert_ne!(addr.port(), 0);

        let (status, head, body) = http_get(addr, "/health");
        assert_eq!(status, 200);
        assert!(head
            .to_ascii_lowercase()
            .contains("content-type: application/json"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({ "status": "ok" })
        );

        let (status, _, body) = http_get(addr, "/__demo/hits");
        assert_eq!(status, 200);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({ "total": 1, "by_path": { "/health": 1 } })
        );

        let (_, _, body) = http_get(addr, "/__demo/last");
        let last: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(last["path"], "/health");
        assert_eq!(last["headers"]["x-test"], "yes");

        running.shutdown();
    }
}
