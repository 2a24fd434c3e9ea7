//! Fetching a bundle over HTTP(S), resumable.
//!
//! A gateway's uplink may be a flaky GSM modem or a village Wi-Fi that drops
//! every evening; a 60 MB bundle must survive that. Bytes go to a `.part`
//! file in the download directory and each new attempt asks for the rest
//! with `Range: bytes=N-`, so a broken connection, a gateway restart or a
//! power cut costs only the bytes in flight. A server that ignores Range
//! (answers 200) makes us start over; one that answers 416 for a complete
//! file means we already have it all. Integrity is not this module's job:
//! the caller checks the SHA-256 of the finished file and RAUC the signature.
//!
//! HTTP is done with hyper (already in the build for the status page) over
//! tokio's TCP and, for https, rustls with the system's CA certificates.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{CONTENT_LENGTH, CONTENT_RANGE, HOST, RANGE, USER_AGENT};
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use url::Url;

/// Attempts in a row that bring no new byte before the download fails.
const MAX_FRUITLESS_ATTEMPTS: u32 = 8;
/// Wait before the first retry; doubles up to [`RETRY_MAX`].
const RETRY_BASE: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// A connection that delivers nothing for this long is given up on.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Room left on the data partition after the bundle: the store and the
/// logs live there too, and must not be starved by an update.
pub const SPACE_MARGIN_BYTES: u64 = 32 * 1024 * 1024;

/// Why a download ended without the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    /// Retrying will not help (404, not enough space, bad address), or
    /// retries ran out; the sentence says which.
    #[error("{0}")]
    Failed(String),
    /// The gateway is stopping; the `.part` file stays for next time.
    #[error("stopped")]
    Stopped,
}

/// What one attempt achieved.
enum Attempt {
    /// The whole file is in `.part`.
    Complete,
    /// The connection broke (or the server hiccuped); try again.
    Broken(String),
}

/// Downloads `url` into `part`, continuing from what `part` holds already.
/// `progress(bytes, total)` is called as data arrives. Returns the size.
pub async fn download(
    url: &str,
    part: &Path,
    stop: &CancellationToken,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<u64, DownloadError> {
    let url = Url::parse(url).map_err(|e| DownloadError::Failed(format!("bad url: {e}")))?;
    let mut fruitless = 0;
    let mut delay = RETRY_BASE;
    loop {
        let before = file_len(part).await;
        let attempt = tokio::select! {
            _ = stop.cancelled() => return Err(DownloadError::Stopped),
            a = attempt(&url, part, &mut progress) => a?,
        };
        let reason = match attempt {
            Attempt::Complete => return Ok(file_len(part).await),
            Attempt::Broken(reason) => reason,
        };
        if file_len(part).await > before {
            fruitless = 0;
            delay = RETRY_BASE;
        } else {
            fruitless += 1;
        }
        if fruitless >= MAX_FRUITLESS_ATTEMPTS {
            return Err(DownloadError::Failed(format!(
                "download failed {fruitless} times in a row without progress: {reason}"
            )));
        }
        tracing::info!("download interrupted ({reason}); resuming in {delay:?}");
        tokio::select! {
            _ = stop.cancelled() => return Err(DownloadError::Stopped),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}

async fn file_len(path: &Path) -> u64 {
    tokio::fs::metadata(path).await.map_or(0, |m| m.len())
}

/// One request for the rest of the file.
async fn attempt(
    url: &Url,
    part: &Path,
    progress: &mut impl FnMut(u64, Option<u64>),
) -> Result<Attempt, DownloadError> {
    let host = url.host_str().unwrap_or_default().to_string();
    let Some(port) = url.port_or_known_default() else {
        return Err(DownloadError::Failed(format!("{url}: no port")));
    };
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
        .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Ok(Attempt::Broken(format!(
                "cannot connect to {host}:{port}: {e}"
            )))
        }
        Err(_) => return Ok(Attempt::Broken(format!("no answer from {host}:{port}"))),
    };
    if url.scheme() == "https" {
        let config = crate::uplink::https_client_config().map_err(DownloadError::Failed)?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| DownloadError::Failed(format!("{host}: {e}")))?;
        match tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
        {
            Ok(tls) => fetch_rest(tls, url, part, progress).await,
            Err(e) => Ok(Attempt::Broken(format!("TLS with {host}: {e}"))),
        }
    } else {
        fetch_rest(tcp, url, part, progress).await
    }
}

async fn fetch_rest<IO>(
    io: IO,
    url: &Url,
    part: &Path,
    progress: &mut impl FnMut(u64, Option<u64>),
) -> Result<Attempt, DownloadError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
            Ok(pair) => pair,
            Err(e) => return Ok(Attempt::Broken(format!("HTTP handshake: {e}"))),
        };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let have = file_len(part).await;
    let authority = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let path = &url[url::Position::BeforePath..];
    let mut request = hyper::Request::get(path).header(HOST, authority).header(
        USER_AGENT,
        concat!("seed-gateway/", env!("CARGO_PKG_VERSION")),
    );
    if have > 0 {
        request = request.header(RANGE, format!("bytes={have}-"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| DownloadError::Failed(format!("bad request for {url}: {e}")))?;
    let response = match sender.send_request(request).await {
        Ok(r) => r,
        Err(e) => return Ok(Attempt::Broken(format!("request failed: {e}"))),
    };
    let status = response.status();
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let (start, total) = match status {
        StatusCode::OK => (0, header(CONTENT_LENGTH).and_then(|v| v.parse().ok())),
        StatusCode::PARTIAL_CONTENT => match header(CONTENT_RANGE)
            .as_deref()
            .and_then(parse_content_range)
        {
            Some((start, total)) if start == have => (start, total),
            _ => {
                return Ok(Attempt::Broken(format!(
                    "the server sent a range we did not ask for ({:?})",
                    header(CONTENT_RANGE)
                )))
            }
        },
        StatusCode::RANGE_NOT_SATISFIABLE => {
            // `bytes */N`: we asked from N on, so we have it all (or more:
            // the file changed, and the hash check will say so).
            let total =
                header(CONTENT_RANGE).and_then(|v| v.strip_prefix("bytes */")?.parse::<u64>().ok());
            if total == Some(have) {
                return Ok(Attempt::Complete);
            }
            truncate(part, 0).await?;
            return Ok(Attempt::Broken(
                "the file on the server changed; starting over".into(),
            ));
        }
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            return Ok(Attempt::Broken(format!("the server answered {s}")))
        }
        s => {
            return Err(DownloadError::Failed(format!(
                "the server answered {s} for {url}"
            )))
        }
    };
    if let Some(total) = total {
        ensure_space(part, total.saturating_sub(start))?;
    }
    let mut file = open_at(part, start).await?;
    let mut written = start;
    progress(written, total);
    let mut body = response.into_body();
    loop {
        let frame = match tokio::time::timeout(STALL_TIMEOUT, body.frame()).await {
            Err(_) => return finish(file, Attempt::Broken("the download stalled".into())).await,
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return finish(file, Attempt::Broken(format!("connection lost: {e}"))).await
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if let Some(total) = total {
                if written + data.len() as u64 > total {
                    return Err(DownloadError::Failed(
                        "the server sent more than it announced".into(),
                    ));
                }
            }
            file.write_all(&data).await.map_err(|e| {
                DownloadError::Failed(format!("cannot write {}: {e}", part.display()))
            })?;
            written += data.len() as u64;
            progress(written, total);
        }
    }
    match total {
        Some(total) if written < total => {
            finish(
                file,
                Attempt::Broken(format!(
                    "connection closed after {written} of {total} bytes"
                )),
            )
            .await
        }
        _ => finish(file, Attempt::Complete).await,
    }
}

/// Makes what was written durable before we count on it, whatever the outcome.
async fn finish(mut file: tokio::fs::File, outcome: Attempt) -> Result<Attempt, DownloadError> {
    let synced = async {
        file.flush().await?;
        file.sync_all().await
    };
    synced
        .await
        .map_err(|e| DownloadError::Failed(format!("cannot save the download: {e}")))?;
    Ok(outcome)
}

async fn open_at(part: &Path, start: u64) -> Result<tokio::fs::File, DownloadError> {
    truncate(part, start).await?;
    tokio::fs::OpenOptions::new()
        .append(true)
        .open(part)
        .await
        .map_err(|e| DownloadError::Failed(format!("cannot open {}: {e}", part.display())))
}

async fn truncate(part: &Path, len: u64) -> Result<(), DownloadError> {
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(part)
        .await
        .map_err(|e| DownloadError::Failed(format!("cannot open {}: {e}", part.display())))?;
    file.set_len(len)
        .await
        .map_err(|e| DownloadError::Failed(format!("cannot resize {}: {e}", part.display())))
}

/// `bytes START-END/TOTAL` → (START, TOTAL if known).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    Some((start.parse().ok()?, total))
}

/// Refuses a download the data partition cannot hold with room to spare.
fn ensure_space(part: &Path, needed: u64) -> Result<(), DownloadError> {
    let dir = part.parent().unwrap_or(Path::new("."));
    let free = free_bytes(dir).map_err(|e| {
        DownloadError::Failed(format!("cannot see free space in {}: {e}", dir.display()))
    })?;
    if needed.saturating_add(SPACE_MARGIN_BYTES) > free {
        return Err(DownloadError::Failed(format!(
            "not enough space: the bundle needs {} MB more and {} MB must stay free for the store, but {} has {} MB free",
            needed.div_ceil(1_000_000),
            SPACE_MARGIN_BYTES / 1_000_000,
            dir.display(),
            free / 1_000_000
        )));
    }
    Ok(())
}

/// Bytes an unprivileged process may still write in `dir`'s filesystem.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_are_read() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 0-9/*"), Some((0, None)));
        assert_eq!(parse_content_range("items 0-9/10"), None);
        assert_eq!(parse_content_range("bytes x-9/10"), None);
    }

    #[test]
    fn a_bundle_larger_than_the_disk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("b.part");
        let err = ensure_space(&part, u64::MAX / 2).unwrap_err();
        assert!(err.to_string().starts_with("not enough space"), "{err}");
        ensure_space(&part, 1).unwrap();
    }
}
