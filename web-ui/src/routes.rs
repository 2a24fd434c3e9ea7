//! The URL map, the shared handler state, and the server loop.
//!
//! Everything the outside world can reach is listed in [`router`]; the contract
//! (`/`, `/api/v1/*`, `/metrics`, `/healthz`, `/admin`) is kept here in one place.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::provider::GatewayView;
use crate::{admin, api, events, metrics, page};

/// Forms are a password or a token; 64 KiB is far more than any of them needs, and small
/// enough that a flood of big bodies costs the appliance nothing. The update upload has its
/// own route with its own, larger limit.
pub const FORM_BODY_LIMIT: usize = 64 * 1024;

/// An update bundle is a compressed root filesystem: tens of megabytes, a few hundred at
/// most. Only a logged-in admin gets to send one (the token is checked before the file).
pub const UPDATE_BODY_LIMIT: usize = 1024 * 1024 * 1024;

/// Only our own files, no inline code, no framing: the page works offline and a hostile
/// page elsewhere on the kiosk Wi-Fi cannot wrap or script it.
const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// What every handler gets: the gateway, the login state, and the server's shutdown signal
/// (long-lived event streams end on it so a graceful shutdown does not wait for phones).
#[derive(Clone)]
pub struct AppState {
    pub(crate) view: Arc<dyn GatewayView>,
    pub(crate) auth: Arc<Auth>,
    pub(crate) shutdown: CancellationToken,
    /// Live event streams open right now (bounded, see `events::MAX_STREAMS`).
    pub(crate) live_streams: Arc<AtomicUsize>,
}

impl AppState {
    /// Runs a provider call on the blocking pool: the trait's methods are synchronous and may
    /// wait on a lock or a SQLite read, which must not stall the HTTP workers.
    pub(crate) async fn ask<T, F>(&self, call: F) -> Result<T, ProviderFailed>
    where
        T: Send + 'static,
        F: FnOnce(&dyn GatewayView) -> T + Send + 'static,
    {
        let view = Arc::clone(&self.view);
        tokio::task::spawn_blocking(move || call(view.as_ref()))
            .await
            .map_err(|error| {
                tracing::error!(%error, "gateway view call failed");
                ProviderFailed
            })
    }
}

/// The gateway's view was cancelled (or, in a debug build, panicked) while answering; the
/// client gets a 500 and the log gets the details. Release builds abort on a panic
/// (`panic = "abort"` in Cargo.toml): the supervisor restarts the whole daemon.
#[derive(Debug)]
pub struct ProviderFailed;

impl IntoResponse for ProviderFailed {
    fn into_response(self) -> Response {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "The gateway could not answer. Details are in its log.\n",
        )
            .into_response()
    }
}

/// The whole web interface for one gateway. Streams end only when the client leaves; use
/// [`serve`] to get them closed on shutdown.
pub fn router(view: Arc<dyn GatewayView>) -> Router {
    router_with_shutdown(view, CancellationToken::new())
}

fn router_with_shutdown(view: Arc<dyn GatewayView>, shutdown: CancellationToken) -> Router {
    let state = AppState {
        view,
        auth: Arc::new(Auth::new()),
        shutdown,
        live_streams: Arc::new(AtomicUsize::new(0)),
    };
    Router::new()
        .route("/", get(page::index))
        .route("/assets/app.js", get(page::app_js))
        .route("/assets/style.css", get(page::style_css))
        .route("/api/v1/status", get(api::status))
        .route("/api/v1/neighbors", get(api::neighbors))
        .route("/api/v1/queue", get(api::queue))
        .route("/api/v1/peers", get(crate::peers::handler))
        .route("/api/v1/events", get(events::stream))
        .route("/metrics", get(metrics::handler))
        .route("/healthz", get(api::healthz))
        .route("/admin", get(admin::home))
        .route("/admin/login", get(admin::login_form).post(admin::login))
        .route("/admin/logout", post(admin::logout))
        .route("/admin/restart-link", post(admin::restart_link))
        .route("/admin/flush-uplink", post(admin::flush_uplink))
        .route("/admin/diagnostics", post(admin::diagnostics))
        .route(
            "/admin/update",
            post(admin::upload_update).layer(DefaultBodyLimit::max(UPDATE_BODY_LIMIT)),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(FORM_BODY_LIMIT))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "Nothing here. The status page is at /\n",
    )
        .into_response()
}

/// Headers every response carries. Caching defaults to `no-store` (status is live data and
/// admin pages are private); the embedded assets override it with validators.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers
        .entry(CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Binds the listening socket. Separate from [`serve`] so the caller learns the real address
/// (port 0 picks a free one) and can print the URL before serving starts.
pub async fn bind(addr: SocketAddr) -> io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves the web interface until `shutdown` is cancelled, then stops accepting, ends the
/// live event streams and waits for requests in flight. Prints nothing.
pub async fn serve(
    listener: TcpListener,
    view: Arc<dyn GatewayView>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let app = router_with_shutdown(view, shutdown.clone());
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}
