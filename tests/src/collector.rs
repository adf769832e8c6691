//! A loopback HTTP endpoint standing in for an audit collector or an alert
//! webhook: it keeps every POST it gets and answers with a status the test
//! sets (503 to play unreachable).

use std::io::Read;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the endpoint received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body, gunzipped when it came with `content-encoding: gzip`.
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

pub struct Collector {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    server: Arc<tiny_http::Server>,
}

impl Collector {
    pub fn start() -> Collector {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind collector"));
        let port = server.server_addr().to_ip().expect("ip listener").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let (srv, rec, st) = (server.clone(), received.clone(), status.clone());
        std::thread::spawn(move || {
            for mut request in srv.incoming_requests() {
                let mut raw = Vec::new();
                let _ = request.as_reader().read_to_end(&mut raw);
                let headers: Vec<(String, String)> = request
                    .headers()
                    .iter()
                    .map(|h| (h.field.to_string(), h.value.to_string()))
                    .collect();
                let gzipped = headers
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("content-encoding") && v == "gzip");
                let body = if gzipped {
                    let mut out = Vec::new();
                    let _ = flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out);
                    out
                } else {
                    raw
                };
                let code = st.load(Ordering::SeqCst);
                if code < 300 {
                    rec.lock().unwrap().push(Received {
                        path: request.url().to_owned(),
                        headers,
                        body,
                    });
                }
                let _ = request.respond(tiny_http::Response::empty(code));
            }
        });
        Collector {
            port,
            received,
            status,
            server,
        }
    }

    /// Answers every request with `status` from now on.
    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// What was accepted so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits up to `within` until `done` holds for what was accepted.
    pub fn wait_until(
        &self,
        within: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if done(&got) || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.unblock();
    }
}
