//! A minimal HTTP/1.1 client over a real TcpStream: one request per connection, exactly the
//! bytes we choose (so a wrong method or an oversized body is easy to send), and an
//! incremental reader for server-sent events. Cheaper to build than a full client crate.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The value of a cookie set by this reply (`Set-Cookie: name=value; ...`).
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.all("set-cookie").into_iter().find_map(|line| {
            let pair = line.split(';').next()?;
            let (key, value) = pair.split_once('=')?;
            (key.trim() == name).then(|| value.to_string())
        })
    }

    /// The whole `Set-Cookie` line for a cookie.
    pub fn set_cookie_line(&self, name: &str) -> Option<String> {
        self.all("set-cookie")
            .into_iter()
            .find(|line| line.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }
}

/// Sends one request and reads the whole reply.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    timeout(LIMIT, exchange(addr, method, path, headers, body))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no complete reply within {LIMIT:?}"))
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[], b"").await
}

pub async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(addr, "GET", path, headers, b"").await
}

/// POSTs an urlencoded form.
pub async fn post_form(
    addr: SocketAddr,
    path: &str,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
) -> Reply {
    let body = fields
        .iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if let Some(cookie) = cookie {
        headers.push(("Cookie", cookie));
    }
    request(addr, "POST", path, &headers, body.as_bytes()).await
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    // The server may answer (413) and close before taking the whole body; that is fine.
    let _ = stream.write_all(body).await;

    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset after the reply (server closed with unread body) still leaves the reply.
            Err(_) if !raw.is_empty() => break,
            Err(e) => panic!("{method} {path}: read failed: {e}"),
        }
    }
    parse(&raw).unwrap_or_else(|| panic!("{method} {path}: unparsable reply {raw:?}"))
}

fn parse(raw: &[u8]) -> Option<Reply> {
    let end = find(raw, b"\r\n\r\n")?;
    let (status, headers) = parse_head(&raw[..end])?;
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        let mut decoder = Dechunker::default();
        decoder.feed(rest);
        decoder.out
    } else {
        rest.to_vec()
    };
    Some(Reply {
        status,
        headers,
        body,
    })
}

fn parse_head(head: &[u8]) -> Option<(u16, Vec<(String, String)>)> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some((status, headers))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes `Transfer-Encoding: chunked` as bytes arrive.
#[derive(Default)]
struct Dechunker {
    pending: Vec<u8>,
    out: Vec<u8>,
    done: bool,
}

impl Dechunker {
    fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while !self.done {
            let Some(line_end) = find(&self.pending, b"\r\n") else {
                return;
            };
            let size_text = String::from_utf8_lossy(&self.pending[..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .expect("chunk size");
            if size == 0 {
                self.done = true;
                return;
            }
            let start = line_end + 2;
            if self.pending.len() < start + size + 2 {
                return;
            }
            self.out
                .extend_from_slice(&self.pending[start..start + size]);
            self.pending.drain(..start + size + 2);
        }
    }
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub retry: Option<String>,
}

/// An open `/api/v1/events` connection.
pub struct EventStream {
    stream: TcpStream,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    dechunker: Dechunker,
}

impl EventStream {
    pub async fn open(addr: SocketAddr, path: &str) -> EventStream {
        timeout(LIMIT, async {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            let head =
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
            stream.write_all(head.as_bytes()).await.expect("write");
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            let end = loop {
                if let Some(end) = find(&raw, b"\r\n\r\n") {
                    break end;
                }
                let n = stream.read(&mut buf).await.expect("read head");
                assert!(n > 0, "closed before the response head");
                raw.extend_from_slice(&buf[..n]);
            };
            let (status, headers) = parse_head(&raw[..end]).expect("response head");
            let mut dechunker = Dechunker::default();
            dechunker.feed(&raw[end + 4..]);
            EventStream {
                stream,
                status,
                headers,
                dechunker,
            }
        })
        .await
        .expect("event stream did not open in time")
    }

    /// The next complete event (comments-only blocks are skipped unless they carry `retry`).
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = find(&self.dechunker.out, b"\n\n") {
                let block: Vec<u8> = self.dechunker.out.drain(..end + 2).collect();
                let block = String::from_utf8_lossy(&block).to_string();
                let mut event = SseEvent {
                    event: String::new(),
                    data: String::new(),
                    retry: None,
                };
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        event.event = value.trim().to_string();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        if !event.data.is_empty() {
                            event.data.push('\n');
                        }
                        event
                            .data
                            .push_str(value.strip_prefix(' ').unwrap_or(value));
                    } else if let Some(value) = line.strip_prefix("retry:") {
                        event.retry = Some(value.trim().to_string());
                    }
                }
                if event.event.is_empty() && event.data.is_empty() && event.retry.is_none() {
                    continue;
                }
                return Some(event);
            }
            let mut buf = [0u8; 8192];
            let n = self.stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            self.dechunker.feed(&buf[..n]);
        }
    }

    /// Reads events until one satisfies `want`, within a bounded time.
    pub async fn until(&mut self, what: &str, want: impl Fn(&SseEvent) -> bool) -> SseEvent {
        timeout(LIMIT, async {
            loop {
                match self.next().await {
                    Some(event) if want(&event) => return event,
                    Some(_) => continue,
                    None => panic!("stream ended while waiting for {what}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {what} within {LIMIT:?}"))
    }
}
