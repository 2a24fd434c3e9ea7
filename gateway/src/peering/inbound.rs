//! The listener: neighbours dial us to hand over their outbox (custodian
//! side). A row is acknowledged only after the store committed it
//! (fsynced); a row that does not fit is refused and stays with its origin.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::mailboxes::Holding;
use super::wire::{self, Message};
use super::{tls, Shared, HANDSHAKE_TIMEOUT, KEEPALIVE};
use crate::store::CommitOutcome;

pub(super) async fn listen(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, from) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accepting a neighbour's connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (shared, acceptor, shutdown) = (shared.clone(), acceptor.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = serve(shared, acceptor, tcp, from.to_string()) => {}
            }
        });
    }
}

async fn serve(
    shared: Arc<Shared>,
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    from: String,
) {
    let _ = tcp.set_nodelay(true);
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
    let mut stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let text = e.to_string();
            let reason = if text.contains(tls::UNLISTED) {
                "unlisted_key"
            } else {
                "handshake"
            };
            tracing::warn!(%from, "refused a neighbour connection: {text}");
            shared.state.refused(from, reason, text);
            return;
        }
        Err(_) => {
            shared.state.refused(
                from,
                "handshake",
                "no handshake within the time limit".into(),
            );
            return;
        }
    };
    // The verifier let only listed keys through.
    let Some(index) = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| tls::key_of_spki(cert))
        .and_then(|key| shared.peer_index(&key))
    else {
        shared.state.refused(
            from,
            "handshake",
            "no listed key after the handshake".into(),
        );
        return;
    };
    let origin = shared.peers[index].key;
    let outcome = async {
        let holding = holding_for(&shared, &origin).await;
        super::send_hello(&mut stream, shared.own_state(holding), &shared.store_id).await?;
        let theirs = tokio::time::timeout(HANDSHAKE_TIMEOUT, super::receive_hello(&mut stream))
            .await
            .map_err(|_| "no hello within the time limit".to_string())?
            .inspect_err(|e| {
                if e.contains("no common peer-link version") {
                    shared
                        .state
                        .refused(from.clone(), "unsupported_version", e.clone());
                }
            })?;
        shared.state.link_up(index, false);
        shared
            .state
            .update(index, |v| v.peer_uplink_up = Some(theirs.status.uplink_up));
        take_custody(&shared, index, theirs.version, stream).await
    }
    .await;
    let why = outcome.err().unwrap_or_else(|| "closed".into());
    shared.state.link_down(index, false, why);
}

async fn take_custody(
    shared: &Shared,
    index: usize,
    version: u16,
    stream: tokio_rustls::server::TlsStream<TcpStream>,
) -> Result<(), String> {
    let origin = shared.peers[index].key;
    let (reader, mut writer) = tokio::io::split(stream);
    let mut incoming = super::spawn_reader(reader);
    let mut uplink = shared.uplink.status.clone();
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    let mut holding = Holding::new(shared, index, version);
    loop {
        let message = tokio::select! {
            message = incoming.recv() => message.ok_or("the link closed")??,
            _ = keepalive.tick() => {
                send_status(shared, &origin, &mut writer).await?;
                continue;
            }
            _ = uplink_changed(&mut uplink) => {
                send_status(shared, &origin, &mut writer).await?;
                continue;
            }
            seqs = shared.receipts.next(index) => {
                let published = Message::Published { seqs };
                if let Err(e) = wire::write_message(&mut writer, &published).await {
                    if let Message::Published { seqs } = published {
                        shared.receipts.add(index, seqs);
                    }
                    return Err(e.to_string());
                }
                continue;
            }
            _ = Holding::next_due(&mut holding) => {
                Holding::send_due(&mut holding, shared, &mut writer).await?;
                continue;
            }
        };
        match message {
            Message::Status { status } => shared
                .state
                .update(index, |v| v.peer_uplink_up = Some(status.uplink_up)),
            Message::Rows { rows } => {
                let mut entries = Vec::with_capacity(rows.len());
                for row in &rows {
                    match row.to_entry() {
                        Some(entry) => entries.push(entry),
                        None => {
                            let text = format!("row {} is malformed", row.seq);
                            let _ = wire::write_message(
                                &mut writer,
                                &Message::Error {
                                    code: "malformed".into(),
                                    text: text.clone(),
                                },
                            )
                            .await;
                            return Err(text);
                        }
                    }
                }
                let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
                let outcomes = shared
                    .store
                    .custody_accept(origin, entries)
                    .await
                    .map_err(|e| format!("store: {e}"))?;
                let (mut taken, mut refused) = (Vec::new(), Vec::new());
                for (seq, outcome) in seqs.into_iter().zip(outcomes) {
                    match outcome {
                        CommitOutcome::Stored { .. } | CommitOutcome::Duplicate => taken.push(seq),
                        CommitOutcome::Refused => refused.push(seq),
                    }
                }
                shared.relay_wake.notify_one();
                if !taken.is_empty() {
                    wire::write_message(&mut writer, &Message::Ack { seqs: taken })
                        .await
                        .map_err(|e| e.to_string())?;
                }
                if !refused.is_empty() {
                    let reason = "this gateway's store is at its quota".to_string();
                    wire::write_message(
                        &mut writer,
                        &Message::Refused {
                            seqs: refused,
                            reason,
                        },
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                }
            }
            Message::Error { code, text } => {
                return Err(format!("the neighbour closed the link: {code}: {text}"))
            }
            other if Holding::answer(&mut holding, shared, &other, &mut writer).await? => {}
            other => {
                return Err(format!(
                    "protocol error: unexpected {} from the neighbour",
                    super::kind(&other)
                ))
            }
        }
    }
}

async fn uplink_changed(
    uplink: &mut Option<tokio::sync::watch::Receiver<crate::uplink::UplinkStatus>>,
) {
    let Some(status) = uplink else {
        return std::future::pending().await;
    };
    let was = status.borrow().connected;
    loop {
        if status.changed().await.is_err() {
            return std::future::pending().await;
        }
        if status.borrow().connected != was {
            return;
        }
    }
}

async fn holding_for(shared: &Shared, origin: &[u8; 32]) -> u64 {
    shared
        .store
        .custody_counts()
        .await
        .ok()
        .and_then(|counts| counts.get(origin).copied())
        .unwrap_or(0)
}

async fn send_status<W: tokio::io::AsyncWrite + Unpin>(
    shared: &Shared,
    origin: &[u8; 32],
    writer: &mut W,
) -> Result<(), String> {
    let holding = holding_for(shared, origin).await;
    wire::write_message(
        writer,
        &Message::Status {
            status: shared.own_state(holding),
        },
    )
    .await
    .map_err(|e| e.to_string())
}
