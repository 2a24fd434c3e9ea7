//! A static HTTP file server on 127.0.0.1 for the guest to download from
//! (update bundles): the guest reaches it as `http://10.0.2.2:PORT/NAME`.
//!
//! HTTP/1.1 GET only, one request per connection, with `Range: bytes=N-`
//! answered 206 (a resumed download). Every request is recorded, so a test
//! can see what the guest fetched.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request the server answered: path, the Range header if any, status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
}

/// Serves the files of one directory. Dropping it stops the server.
pub struct FileServer {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    task: JoinHandle<()>,
}

impl FileServer {
    /// Serves `root` (files directly in it, by name) on a free port.
    pub async fn start(root: impl Into<PathBuf>) -> FileServer {
        let root = root.into();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the file server");
        let port = listener.local_addr().expect("local addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let root = root.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    if let Some(request) = serve(stream, &root).await {
                        log.lock().expect("request log").push(request);
                    }
                });
            }
        });
        FileServer {
            port,
            requests,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `name` as the QEMU guest sees it (slirp's host address).
    pub fn guest_url(&self, name: &str) -> String {
        format!("http://10.0.2.2:{}/{name}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("request log").clone()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: tokio::net::TcpStream, root: &std::path::Path) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await.ok()?;
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await.ok()? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next()?;
    let path = parts.next()?.to_string();
    let name = path.trim_start_matches('/');
    let file = (method == "GET" && !name.is_empty() && !name.contains('/') && !name.contains(".."))
        .then(|| root.join(name));
    let body = match &file {
        Some(file) => tokio::fs::read(file).await.ok(),
        None => None,
    };
    let stream = reader.get_mut();
    let status = match body {
        None => {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            404
        }
        Some(body) => {
            let start = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n < body.len());
            let (status, head, slice) = match start {
                Some(start) => (
                    206,
                    format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                        body.len() - start,
                        body.len() - 1,
                        body.len()
                    ),
                    &body[start..],
                ),
                None => (
                    200,
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
                        body.len()
                    ),
                    &body[..],
                ),
            };
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(slice).await;
            let _ = stream.shutdown().await;
            status
        }
    };
    Some(Request {
        path,
        range,
        status,
    })
}
