//! `/admin`: the technician's actions, behind a password.
//!
//! Every state-changing request is a POST form carrying the session's CSRF token; results
//! are shown after a redirect (post/redirect/get) so a reload never repeats an action.
//! The order of checks on each request is fixed and deliberate:
//!
//! 1. admin switched off (no usable password hash) → the page that says how to switch it on;
//! 2. no live session → 303 to the login form;
//! 3. wrong CSRF token → 403;
//! 4. the action itself, its outcome left as a one-shot message for the next page.
//!
//! Login has its own CSRF token (a cookie and a hidden field that must match) and is rate
//! limited before the password is even looked at.
//!
//! Adding an action means a route in `routes.rs` with its own body limit, a handler here
//! built on [`authorized`], a variant of [`AdminAction`](crate::AdminAction), and a form in
//! [`pages`]. The update upload ([`upload`]) is the one with a large body.

mod pages;
mod upload;

pub use upload::upload_update;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{AppendHeaders, Html, IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

use crate::auth::password::{is_usable_hash, verify_password, Verdict};
use crate::auth::session::{Csrf, Flash, SessionInfo, SESSION_COOKIE};
use crate::auth::token::{
    admin_cookie, expired_admin_cookie, random_token, read_cookie, same_secret,
};
use crate::provider::AdminAction;
use crate::routes::{AppState, ProviderFailed};

/// The login form's own CSRF cookie (there is no session yet to hold a token).
const LOGIN_COOKIE: &str = "seed_login";

/// The client's address, for rate limiting. Without connection info (a router used without
/// [`crate::serve`]) every client shares one bucket, which only makes the limit stricter.
pub struct ClientIp(IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Ok(ClientIp(ip))
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    link: String,
}

/// Whether admin can be used right now; asked on every request so a password set while the
/// gateway runs applies at once.
enum Access {
    Off { hint: String },
    Broken { hint: String },
    On { hash: String },
}

async fn access(state: &AppState) -> Result<Access, ProviderFailed> {
    let (hash, hint) = state
        .ask(|view| (view.admin_password_hash(), view.admin_setup_hint()))
        .await?;
    Ok(match hash {
        None => Access::Off { hint },
        Some(hash) if !is_usable_hash(&hash) => Access::Broken { hint },
        Some(hash) => Access::On { hash },
    })
}

fn switched_off(access: &Access, status: StatusCode) -> Option<Response> {
    match access {
        Access::Off { hint } => {
            Some((status, Html(pages::switched_off(hint, false))).into_response())
        }
        Access::Broken { hint } => Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Html(pages::switched_off(hint, true)),
            )
                .into_response(),
        ),
        Access::On { .. } => None,
    }
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_string())]).into_response()
}

fn no_randomness() -> Response {
    tracing::error!("the operating system's random source failed; cannot start a session");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "The gateway cannot create a secure session right now. Details are in its log.\n",
    )
        .into_response()
}

/// The live session named by the request's cookie, if any.
fn current_session(state: &AppState, headers: &HeaderMap) -> Option<SessionInfo> {
    let id = read_cookie(headers, SESSION_COOKIE)?;
    state.auth.sessions.open(&id)
}

/// `GET /admin`: the actions, or the way to the login form.
pub async fn home(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ProviderFailed> {
    let access = access(&state).await?;
    if let Some(page) = switched_off(&access, StatusCode::OK) {
        return Ok(page);
    }
    let Some(session) = current_session(&state, &headers) else {
        return Ok(see_other("/admin/login"));
    };
    let flash = state.auth.sessions.take_flash(&session.id);
    let status = state.ask(|view| view.status()).await?;
    Ok(Html(pages::dashboard(&status, &session.csrf, flash.as_ref())).into_response())
}

/// `GET /admin/login`.
pub async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ProviderFailed> {
    let access = access(&state).await?;
    if let Some(page) = switched_off(&access, StatusCode::OK) {
        return Ok(page);
    }
    if current_session(&state, &headers).is_some() {
        return Ok(see_other("/admin"));
    }
    Ok(login_page(StatusCode::OK, None))
}

/// The login form with a fresh CSRF token in both the form and its cookie.
fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    match random_token() {
        Ok(token) => (
            status,
            [(SET_COOKIE, admin_cookie(LOGIN_COOKIE, &token))],
            Html(pages::login(&token, error)),
        )
            .into_response(),
        Err(_) => no_randomness(),
    }
}

/// `POST /admin/login`.
pub async fn login(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ProviderFailed> {
    let access = access(&state).await?;
    if let Some(page) = switched_off(&access, StatusCode::FORBIDDEN) {
        return Ok(page);
    }
    let Access::On { hash } = access else {
        return Ok(see_other("/admin"));
    };

    let expected = read_cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(&expected, &form.csrf) {
        return Ok(login_page(
            StatusCode::FORBIDDEN,
            Some("The login form had expired. Please enter the password again."),
        ));
    }

    if let Err(wait) = state.auth.limiter.begin(client) {
        let seconds = wait.as_secs().max(1);
        tracing::warn!(%client, "admin login refused: too many attempts");
        let mut page = login_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many wrong passwords. Wait a minute, then try again."),
        );
        if let Ok(value) = seconds.to_string().parse() {
            page.headers_mut().insert(RETRY_AFTER, value);
        }
        return Ok(page);
    }

    let password = form.password;
    let verdict = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|_| ProviderFailed)?;
    match verdict {
        Verdict::Match => {
            state.auth.limiter.forgive(client);
            let Ok(id) = state.auth.sessions.create() else {
                return Ok(no_randomness());
            };
            tracing::info!(%client, "admin logged in");
            Ok((
                StatusCode::SEE_OTHER,
                AppendHeaders([
                    (SET_COOKIE, admin_cookie(SESSION_COOKIE, &id)),
                    (SET_COOKIE, expired_admin_cookie(LOGIN_COOKIE)),
                    (LOCATION, "/admin".to_string()),
                ]),
            )
                .into_response())
        }
        Verdict::Mismatch => {
            tracing::warn!(%client, "admin login failed: wrong password");
            Ok(login_page(
                StatusCode::UNAUTHORIZED,
                Some("Wrong password."),
            ))
        }
        Verdict::UnusableHash => Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            Html(pages::switched_off(
                &state.ask(|v| v.admin_setup_hint()).await?,
                true,
            )),
        )
            .into_response()),
    }
}

/// The checks every admin POST passes before it acts; Err is the response to send instead.
async fn authorized(state: &AppState, headers: &HeaderMap, csrf: &str) -> Result<String, Response> {
    let access = access(state).await.map_err(IntoResponse::into_response)?;
    if let Some(page) = switched_off(&access, StatusCode::FORBIDDEN) {
        return Err(page);
    }
    let Some(id) = read_cookie(headers, SESSION_COOKIE) else {
        return Err(see_other("/admin/login"));
    };
    match state.auth.sessions.check_csrf(&id, csrf) {
        Csrf::Valid => Ok(id),
        Csrf::NoSession => Err(see_other("/admin/login")),
        Csrf::Invalid => {
            tracing::warn!("admin form refused: CSRF token did not match");
            Err((StatusCode::FORBIDDEN, Html(pages::forged_form())).into_response())
        }
    }
}

/// `POST /admin/logout`.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    match authorized(&state, &headers, &form.csrf).await {
        Ok(id) => {
            state.auth.sessions.remove(&id);
            (
                StatusCode::SEE_OTHER,
                AppendHeaders([
                    (SET_COOKIE, expired_admin_cookie(SESSION_COOKIE)),
                    (LOCATION, "/".to_string()),
                ]),
            )
                .into_response()
        }
        Err(response) => response,
    }
}

/// `POST /admin/restart-link` (form field `link`).
pub async fn restart_link(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let action = AdminAction::RestartLink(form.link.clone());
    act(&state, &headers, &form.csrf, action).await
}

/// `POST /admin/flush-uplink`.
pub async fn flush_uplink(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    act(&state, &headers, &form.csrf, AdminAction::FlushUplink).await
}

/// Runs an action for an authorized form and shows its outcome on the admin page.
async fn act(state: &AppState, headers: &HeaderMap, csrf: &str, action: AdminAction) -> Response {
    let id = match authorized(state, headers, csrf).await {
        Ok(id) => id,
        Err(response) => return response,
    };
    finish_action(state, &id, action).await
}

/// Runs an action for an authorized session and shows its outcome on the admin page.
async fn finish_action(state: &AppState, id: &str, action: AdminAction) -> Response {
    let id = id.to_string();
    tracing::info!(?action, "admin action");
    let flash = match state.ask(move |view| view.admin_action(action)).await {
        Ok(Ok(text)) => Flash { ok: true, text },
        Ok(Err(text)) => Flash { ok: false, text },
        Err(failed) => return failed.into_response(),
    };
    state.auth.sessions.set_flash(&id, flash);
    see_other("/admin")
}

/// `POST /admin/diagnostics`: the bundle as a download. A POST with the CSRF token, not a
/// link, because the bundle describes the installation and should leave only on purpose.
pub async fn diagnostics(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err(response) = authorized(&state, &headers, &form.csrf).await {
        return response;
    }
    let bundle = match state.ask(|view| view.diagnostic_bundle()).await {
        Ok(bundle) => bundle,
        Err(failed) => return failed.into_response(),
    };
    let file_name = safe_file_name(&bundle.file_name);
    let content_type =
        if bundle.content_type.is_empty() || bundle.content_type.contains(['\r', '\n']) {
            "application/octet-stream".to_string()
        } else {
            bundle.content_type
        };
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, content_type),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        bundle.bytes,
    )
        .into_response()
}

/// Keeps a file name safe inside a quoted header value and on any file system.
fn safe_file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned.is_empty() {
        "seed-gateway-diagnostics".to_string()
    } else {
        cleaned.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::safe_file_name;

    #[test]
    fn file_names_cannot_escape_the_header() {
        assert_eq!(safe_file_name("diag.tar"), "diag.tar");
        assert_eq!(safe_file_name("a\"b\r\nc/../d"), "a_b__c_.._d");
        assert_eq!(safe_file_name("../.."), "_..");
        assert_eq!(safe_file_name(""), "seed-gateway-diagnostics");
    }
}
