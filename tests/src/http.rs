//! A minimal HTTP/1.1 client for tests: one request per connection, so every
//! request is a fresh stream through Envoy.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lowercased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends `method path` to `127.0.0.1:port` with raw header lines (bytes, so
/// tests can send non-UTF-8 values).
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &[u8])]) -> Response {
    let mut stream = connect(port);
    stream
        .write_all(&head(method, path, headers, None))
        .unwrap();
    parse(&read_response(&mut stream))
}

/// A connection to Envoy, reading with a timeout longer than Envoy's 15 s
/// route timeout: a slow upstream is a 504, not a hang here.
fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to Envoy");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// The request line and headers, one request per connection, with
/// `content-length` when a body follows.
fn head(
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    content_length: Option<usize>,
) -> Vec<u8> {
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nhost: customers.internal\r\nconnection: close\r\n")
            .into_bytes();
    if let Some(n) = content_length {
        req.extend_from_slice(format!("content-length: {n}\r\n").as_bytes());
    }
    for (name, value) in headers {
        req.extend_from_slice(name.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req
}

/// As [`request`], with a body (sent with `content-length` from another
/// thread, so a server that answers before reading it all does not block
/// the test).
pub fn request_with_body(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    body: Vec<u8>,
) -> Response {
    let mut stream = connect(port);
    stream
        .write_all(&head(method, path, headers, Some(body.len())))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        // A refusal may close the connection mid-body: that is not an error here.
        let _ = writer.write_all(&body);
    });
    let response = parse(&read_response(&mut stream));
    // Unblocks the writer if the server stopped reading.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    response
}

/// Reads one response: the head, then `content-length` bytes, or chunks up to
/// the last one, or (neither) to EOF. It does not wait for the server to
/// close: Envoy holds a closing connection open for its delayed-close timeout.
fn read_response(stream: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut body_start = None;
    loop {
        if body_start.is_none() {
            body_start = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
        }
        if let Some(start) = body_start {
            let head = String::from_utf8_lossy(&raw[..start]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let complete = match length {
                Some(n) => raw.len() >= start + n,
                None if head.contains("transfer-encoding: chunked") => raw.ends_with(b"0\r\n\r\n"),
                None => false,
            };
            if complete {
                return raw;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    let h: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    request(port, "GET", path, &h)
}

fn parse(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
