//! `POST /admin/update`: an update bundle uploaded from the technician's phone or laptop.
//!
//! Browsers send files only as `multipart/form-data`, so this is the one admin form that is
//! not url-encoded. The form puts the CSRF token and the downgrade checkbox before the file,
//! and the token is checked before a single byte of the file is written: an unauthorised
//! upload costs the gateway no disk. The file is streamed to the gateway's upload directory
//! (on its data partition, never held in memory: a bundle is tens of megabytes and a Pi
//! Zero has 512 MiB) and then handed over with [`AdminAction::InstallUpdate`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::multipart::Field;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;

use super::{authorized, finish_action, see_other};
use crate::auth::session::Flash;
use crate::provider::AdminAction;
use crate::routes::AppState;

/// Uploads in this process, to name their files apart.
static UPLOADS: AtomicU64 = AtomicU64::new(0);

pub async fn upload_update(
    State(state): State<AppState>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Response {
    let mut csrf: Option<String> = None;
    let mut allow_downgrade = false;
    let mut uploaded: Option<(String, PathBuf)> = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                discard(uploaded.as_ref()).await;
                return (
                    StatusCode::BAD_REQUEST,
                    format!("The upload was cut off or malformed: {e}\n"),
                )
                    .into_response();
            }
        };
        match field.name() {
            Some("csrf") => csrf = field.text().await.ok(),
            Some("allow_downgrade") => allow_downgrade = true,
            Some("bundle") if uploaded.is_none() => {
                let Some(token) = csrf.as_deref() else {
                    return (
                        StatusCode::FORBIDDEN,
                        "The form's token must come before the file.\n",
                    )
                        .into_response();
                };
                let session = match authorized(&state, &headers, token).await {
                    Ok(session) => session,
                    Err(response) => return response,
                };
                let dir = match state.ask(|view| view.update_upload_dir()).await {
                    Ok(dir) => dir,
                    Err(failed) => return failed.into_response(),
                };
                let Some(dir) = dir else {
                    let text = "Updates are not enabled on this gateway.".to_string();
                    state
                        .auth
                        .sessions
                        .set_flash(&session, Flash { ok: false, text });
                    return see_other("/admin");
                };
                let room = match state.ask(|view| view.update_upload_room()).await {
                    Ok(room) => room,
                    Err(failed) => return failed.into_response(),
                };
                let announced = headers
                    .get(axum::http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if let (Some(room), Some(size)) = (room, announced) {
                    if size > room {
                        let text = no_room(size, room);
                        state
                            .auth
                            .sessions
                            .set_flash(&session, Flash { ok: false, text });
                        return see_other("/admin");
                    }
                }
                let path = dir.join(format!(
                    "upload-{}-{}.raucb.part",
                    std::process::id(),
                    UPLOADS.fetch_add(1, Ordering::Relaxed)
                ));
                if let Err(text) = save(field, &path, room).await {
                    let _ = tokio::fs::remove_file(&path).await;
                    state
                        .auth
                        .sessions
                        .set_flash(&session, Flash { ok: false, text });
                    return see_other("/admin");
                }
                uploaded = Some((session, path));
            }
            _ => {}
        }
    }
    let Some((session, bundle)) = uploaded else {
        return (StatusCode::BAD_REQUEST, "No bundle file in the upload.\n").into_response();
    };
    tracing::info!(bundle = %bundle.display(), allow_downgrade, "admin uploaded an update");
    let action = AdminAction::InstallUpdate {
        bundle,
        allow_downgrade,
    };
    finish_action(&state, &session, action).await
}

/// Streams the file field to `path` and makes it durable; stops at `room`.
async fn save(mut field: Field<'_>, path: &Path, room: Option<u64>) -> Result<(), String> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("Cannot store the upload: {e}"))?;
    let mut size: u64 = 0;
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                size += chunk.len() as u64;
                if let Some(room) = room.filter(|room| size > *room) {
                    return Err(no_room(size, room));
                }
                file.write_all(&chunk)
                    .await
                    .map_err(|e| format!("Cannot store the upload after {size} bytes: {e}"))?;
            }
            Ok(None) => break,
            Err(e) => return Err(format!("The upload was cut off after {size} bytes: {e}")),
        }
    }
    if size == 0 {
        return Err("The uploaded file is empty; choose a .raucb bundle.".into());
    }
    file.sync_all()
        .await
        .map_err(|e| format!("Cannot store the upload: {e}"))
}

fn no_room(size: u64, room: u64) -> String {
    format!(
        "Not enough space for this update: it needs {} MB, the gateway can spare {} MB. Nothing was changed.",
        size.div_ceil(1_000_000),
        room / 1_000_000
    )
}

async fn discard(uploaded: Option<&(String, PathBuf)>) {
    if let Some((_, path)) = uploaded {
        let _ = tokio::fs::remove_file(path).await;
    }
}
