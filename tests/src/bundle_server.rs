//! A loopback OPA bundle server: serves the bundle the test puts up, with
//! an ETag, answering `304 Not Modified` to a poll that names it, and
//! counts what it answered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct BundleServer {
    pub port: u16,
    /// The bundle and its ETag.
    bundle: Arc<Mutex<(Vec<u8>, String)>>,
    polls: Arc<AtomicUsize>,
    not_modified: Arc<AtomicUsize>,
    server: Arc<tiny_http::Server>,
}

impl BundleServer {
    /// Starts serving `bundle` at every path.
    pub fn start(bundle: &[u8]) -> BundleServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind bundle server"));
        let port = server.server_addr().to_ip().expect("ip listener").port();
        let bundle = Arc::new(Mutex::new((bundle.to_vec(), etag(bundle))));
        let polls = Arc::new(AtomicUsize::new(0));
        let not_modified = Arc::new(AtomicUsize::new(0));
        let (srv, b, p, nm) = (
            server.clone(),
            bundle.clone(),
            polls.clone(),
            not_modified.clone(),
        );
        std::thread::spawn(move || {
            for request in srv.incoming_requests() {
                p.fetch_add(1, Ordering::SeqCst);
                let (bytes, tag) = b.lock().unwrap().clone();
                let asked = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("if-none-match"))
                    .map(|h| h.value.as_str().to_owned());
                let etag_header =
                    tiny_http::Header::from_bytes(&b"etag"[..], tag.as_bytes()).unwrap();
                let response = if asked.as_deref() == Some(tag.as_str()) {
                    nm.fetch_add(1, Ordering::SeqCst);
                    tiny_http::Response::from_data(Vec::new()).with_status_code(304)
                } else {
                    tiny_http::Response::from_data(bytes)
                };
                let _ = request.respond(response.with_header(etag_header));
            }
        });
        BundleServer {
            port,
            bundle,
            polls,
            not_modified,
            server,
        }
    }

    /// Serves `bundle` from now on, under a new ETag.
    pub fn serve(&self, bundle: &[u8]) {
        *self.bundle.lock().unwrap() = (bundle.to_vec(), etag(bundle));
    }

    /// Polls answered so far.
    pub fn polls(&self) -> usize {
        self.polls.load(Ordering::SeqCst)
    }

    /// Polls answered `304 Not Modified` so far.
    pub fn not_modified(&self) -> usize {
        self.not_modified.load(Ordering::SeqCst)
    }

    /// Waits up to `within` for more than `than` polls.
    pub fn wait_for_polls(&self, than: usize, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        while self.polls() <= than && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.polls()
    }
}

/// A quoted entity tag naming the content (FNV-1a: the test needs a
/// change to show, not a cryptographic digest).
fn etag(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("\"{hash:016x}\"")
}

impl Drop for BundleServer {
    fn drop(&mut self) {
        self.server.unblock();
    }
}
