//! A loopback JWKS endpoint standing in for an identity provider: it serves
//! whatever key set the test puts up (or an error status) and counts the
//! fetches.

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct JwksServer {
    pub port: u16,
    body: Arc<Mutex<Vec<u8>>>,
    status: Arc<AtomicU16>,
    fetches: Arc<AtomicUsize>,
    server: Arc<tiny_http::Server>,
}

impl JwksServer {
    /// Starts answering every request with `status` and `body`.
    pub fn start(status: u16, body: &str) -> JwksServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind JWKS server"));
        let port = server.server_addr().to_ip().expect("ip listener").port();
        let body = Arc::new(Mutex::new(body.as_bytes().to_vec()));
        let status = Arc::new(AtomicU16::new(status));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (srv, b, st, n) = (
            server.clone(),
            body.clone(),
            status.clone(),
            fetches.clone(),
        );
        std::thread::spawn(move || {
            for request in srv.incoming_requests() {
                n.fetch_add(1, Ordering::SeqCst);
                let bytes = b.lock().unwrap().clone();
                let response = tiny_http::Response::from_data(bytes)
                    .with_status_code(st.load(Ordering::SeqCst));
                let _ = request.respond(response);
            }
        });
        JwksServer {
            port,
            body,
            status,
            fetches,
            server,
        }
    }

    /// Serves `status` and `body` from now on.
    pub fn serve(&self, status: u16, body: &str) {
        *self.body.lock().unwrap() = body.as_bytes().to_vec();
        self.status.store(status, Ordering::SeqCst);
    }

    /// Requests received so far.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Waits up to `within` for more than `than` fetches.
    pub fn wait_for_fetches(&self, than: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        while self.fetches() <= than && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.fetches()
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.server.unblock();
    }
}
