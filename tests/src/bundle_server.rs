//! A small HTTP/1.1 file server for update bundles, with the behaviour of
//! real ones that a download must cope with: `Range` requests (206 with
//! `Content-Range`, 416 past the end), and on request a connection that
//! breaks half-way through the first transfer, or a size that the disk
//! cannot hold. Every request's path and `Range` header are recorded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How one file is served.
#[derive(Debug, Clone)]
pub struct Served {
    pub bytes: Arc<Vec<u8>>,
    /// Close the connection after this many body bytes, on the first
    /// request for this file only.
    pub break_first_after: Option<usize>,
    /// Announce this length instead of the real one (and send nothing).
    pub claimed_length: Option<u64>,
}

impl Served {
    pub fn file(bytes: Vec<u8>) -> Served {
        Served {
            bytes: Arc::new(bytes),
            break_first_after: None,
            claimed_length: None,
        }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub path: String,
    pub range: Option<String>,
}

#[derive(Default)]
struct Shared {
    files: HashMap<String, Served>,
    seen: Vec<SeenRequest>,
}

/// A running server on 127.0.0.1 (or the given address).
pub struct BundleServer {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl BundleServer {
    pub async fn start(bind: SocketAddr) -> BundleServer {
        let listener = TcpListener::bind(bind).await.expect("bundle server binds");
        let addr = listener.local_addr().expect("bound address");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let for_task = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, for_task.clone()));
            }
        });
        BundleServer { addr, shared, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves `served` at `/{name}`.
    pub fn put(&self, name: &str, served: Served) {
        self.lock().files.insert(format!("/{name}"), served);
    }

    /// `http://{host}:{port}/{name}`, `host` as the client sees this machine.
    pub fn url(&self, host: &str, name: &str) -> String {
        format!("http://{host}:{}/{name}", self.addr.port())
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.lock().seen.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for BundleServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: TcpStream, shared: Arc<Mutex<Shared>>) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
        return;
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let (served, first) = {
        let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
        let first = !shared.seen.iter().any(|r| r.path == path);
        shared.seen.push(SeenRequest {
            path: path.clone(),
            range: range.clone(),
        });
        (shared.files.get(&path).cloned(), first)
    };
    let mut stream = reader.into_inner();
    let Some(served) = served else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    };
    if let Some(length) = served.claimed_length {
        let head =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(head.as_bytes()).await;
        return;
    }
    let total = served.bytes.len();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse::<usize>().ok());
    let (head, body) = match start {
        Some(start) if start >= total => (
            format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{total}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            &served.bytes[0..0],
        ),
        Some(start) => (
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{total}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                total - 1,
                total - start
            ),
            &served.bytes[start..],
        ),
        None => (
            format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n"),
            &served.bytes[..],
        ),
    };
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let body = match served.break_first_after {
        Some(n) if first => &body[..n.min(body.len())],
        _ => body,
    };
    let _ = stream.write_all(body).await;
    let _ = stream.flush().await;
}
