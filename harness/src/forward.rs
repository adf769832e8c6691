//! A small HTTP/1.1 forwarder for `palisade serve`: one request per
//! connection to a plain-HTTP upstream, hop-by-hop headers dropped.

use crate::host::{HeaderPairs, UpstreamResponse};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Largest upstream response body read.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// `http://host:port` parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
}

impl Upstream {
    pub fn parse(url: &str) -> Result<Upstream, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("upstream `{url}` must be http://host:port"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| format!("bad port in `{url}`"))?),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("upstream `{url}` has no host"));
        }
        Ok(Upstream {
            host: host.to_owned(),
            port,
        })
    }
}

fn hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&str; 8] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
    ];
    name.starts_with(b":") || HOP.iter().any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// Sends one request; any failure is a 502 answer, never a panic.
pub fn send(
    to: &Upstream,
    method: &str,
    path: &str,
    headers: &HeaderPairs,
    body: &[u8],
) -> UpstreamResponse {
    match try_send(to, method, path, headers, body) {
        Ok(r) => r,
        Err(e) => UpstreamResponse {
            status: 502,
            headers: vec![(b"content-type".to_vec(), b"text/plain".to_vec())],
            body: format!("palisade serve: upstream error: {e}").into_bytes(),
        },
    }
}

fn try_send(
    to: &Upstream,
    method: &str,
    path: &str,
    headers: &HeaderPairs,
    body: &[u8],
) -> Result<UpstreamResponse, String> {
    let mut stream = TcpStream::connect((to.host.as_str(), to.port)).map_err(|e| e.to_string())?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {}:{}\r\nconnection: close\r\n",
        to.host, to.port
    )
    .into_bytes();
    for (k, v) in headers
        .iter()
        .filter(|(k, _)| !hop_by_hop(k) && !k.eq_ignore_ascii_case(b"host"))
    {
        req.extend_from_slice(k);
        req.extend_from_slice(b": ");
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    stream.write_all(&req).map_err(|e| e.to_string())?;

    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut out_headers = Vec::new();
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = v.parse::<usize>().ok();
            }
            if k == "transfer-encoding" && v.contains("chunked") {
                chunked = true;
            }
            if !hop_by_hop(k.as_bytes()) {
                out_headers.push((k.into_bytes(), v.as_bytes().to_vec()));
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).map_err(|e| e.to_string())?;
            let size = usize::from_str_radix(line.trim(), 16).map_err(|_| "bad chunk size")?;
            if size == 0 || body.len() + size > MAX_BODY {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).map_err(|e| e.to_string())?;
            chunk.truncate(size);
            body.extend(chunk);
        }
    } else if let Some(n) = length {
        body.resize(n.min(MAX_BODY), 0);
        reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    } else {
        reader
            .take(MAX_BODY as u64)
            .read_to_end(&mut body)
            .map_err(|e| e.to_string())?;
    }
    Ok(UpstreamResponse {
        status,
        headers: out_headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_urls() {
        assert_eq!(
            Upstream::parse("http://127.0.0.1:8080").unwrap(),
            Upstream {
                host: "127.0.0.1".into(),
                port: 8080
            }
        );
        assert_eq!(Upstream::parse("http://api/x").unwrap().port, 80);
        assert!(Upstream::parse("https://x").is_err());
        assert!(Upstream::parse("http://:1").is_err());
    }

    #[test]
    fn unreachable_upstream_is_a_502() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = send(
            &Upstream {
                host: "127.0.0.1".into(),
                port,
            },
            "GET",
            "/",
            &vec![],
            b"",
        );
        assert_eq!(r.status, 502);
    }
}
