//! The link we dial to one neighbour, and the custody transfer of our
//! outbox over it (origin side).
//!
//! The rule is the one of radio acks and PUBACKs: a row leaves our outbox
//! only when the neighbour said it is on its disk (`ack`). Until then it
//! stays ours; after a dropped link or a restart it is simply sent again
//! and the neighbour recognises it by msg_id.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::mailboxes::Offering;
use super::wire::{self, Message, Row};
use super::{handback, tls, Shared, HANDSHAKE_TIMEOUT, KEEPALIVE};

const NO_CUSTODIAN: usize = usize::MAX;
/// How often the outbox is looked at while handing over.
const POLL: Duration = Duration::from_millis(200);
/// After the neighbour refused rows, wait this long before offering again.
const REFUSAL_PAUSE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Keeps the link to neighbour `index` up for as long as the gateway runs.
pub(super) async fn dial(shared: Arc<Shared>, index: usize, shutdown: CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = tokio::time::Instant::now();
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => Ok(()),
            outcome = session(&shared, index) => outcome,
        };
        release_custody(&shared, index);
        if shutdown.is_cancelled() {
            return;
        }
        let why = outcome
            .err()
            .unwrap_or_else(|| "the neighbour closed the link".into());
        let peer = &shared.peers[index];
        tracing::info!(peer = %peer.name, "link to neighbour down: {why}");
        shared.state.link_down(index, true, why);
        if started.elapsed() > BACKOFF_MAX {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn release_custody(shared: &Shared, index: usize) {
    let _ =
        shared
            .custodian
            .compare_exchange(index, NO_CUSTODIAN, Ordering::SeqCst, Ordering::SeqCst);
    shared.state.update(index, |v| v.custody_active = false);
}

/// One connection: handshake, then hand over rows while it is wanted.
async fn session(shared: &Shared, index: usize) -> Result<(), String> {
    let peer = &shared.peers[index];
    let connector =
        tokio_rustls::TlsConnector::from(tls::client_config(&shared.identity, peer.key)?);
    let (stream, their_hello) = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let tcp = TcpStream::connect(&peer.address)
            .await
            .map_err(|e| format!("cannot reach {}: {e}", peer.address))?;
        let _ = tcp.set_nodelay(true);
        let mut stream = connector
            .connect(tls::server_name(), tcp)
            .await
            .map_err(|e| format!("secure handshake with {} failed: {e}", peer.address))?;
        super::send_hello(&mut stream, shared.own_state(0), &shared.store_id).await?;
        let hello = super::receive_hello(&mut stream).await?;
        Ok::<_, String>((stream, hello))
    })
    .await
    .map_err(|_| {
        format!(
            "no answer from {} within {HANDSHAKE_TIMEOUT:?}",
            peer.address
        )
    })??;
    let (reader, mut writer) = tokio::io::split(stream);
    let mut incoming = super::spawn_reader(reader);
    let mut theirs = their_hello.status;
    let custodian = handback::on_hello(shared, index, their_hello.store_id).await?;
    handback::on_status(shared, &custodian, theirs).await?;
    let mut offering = Offering::new(shared, index, their_hello.version);
    shared.state.link_up(index, true);
    shared.state.update(index, |v| {
        v.peer_uplink_up = Some(theirs.uplink_up);
        v.held_by_peer = theirs.holding_for_you;
    });
    tracing::info!(peer = %peer.name, "link to neighbour up");

    let mut handover = Handover::default();
    let mut poll = tokio::time::interval(POLL);
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    let mut paused_until: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            message = incoming.recv() => {
                let message = message.ok_or("the link closed")??;
                match message {
                    Message::Status { status } => {
                        theirs = status;
                        handback::on_status(shared, &custodian, status).await?;
                        shared.state.update(index, |v| {
                            v.peer_uplink_up = Some(status.uplink_up);
                            v.held_by_peer = status.holding_for_you;
                        });
                    }
                    Message::Ack { seqs } => {
                        // Hand over only what we offered on this connection.
                        let ours: Vec<u64> = seqs.into_iter().filter(|s| handover.in_flight.remove(s)).collect();
                        let count = ours.len() as u64;
                        handback::on_ack(shared, index, &custodian, ours).await?;
                        shared.state.update(index, |v| v.handed_over_total += count);
                    }
                    Message::Published { seqs } => handback::on_published(shared, index, &custodian, seqs).await?,
                    Message::Refused { seqs, reason } => {
                        let count = seqs.len() as u64;
                        for seq in &seqs {
                            handover.in_flight.remove(seq);
                        }
                        // Offer them again later, in order.
                        if let Some(first) = seqs.iter().min() {
                            handover.cursor = handover.cursor.min(first.saturating_sub(1));
                        }
                        tracing::warn!(peer = %peer.name, count, "neighbour refused rows: {reason}; keeping them");
                        shared.state.update(index, |v| v.refused_by_peer_total += count);
                        paused_until = Some(tokio::time::Instant::now() + REFUSAL_PAUSE);
                    }
                    Message::Error { code, text } => return Err(format!("the neighbour closed the link: {code}: {text}")),
                    other if Offering::answer(&mut offering, shared, &other).await? => {}
                    other => return Err(format!("protocol error: unexpected {} from the neighbour", super::kind(&other))),
                }
            }
            _ = poll.tick() => {}
            _ = Offering::next_due(&mut offering) => {}
            _ = keepalive.tick() => {
                wire::write_message(&mut writer, &Message::Status { status: shared.own_state(0) }).await.map_err(|e| e.to_string())?;
                continue;
            }
        }
        Offering::send_due(&mut offering, shared, &mut writer).await?;
        if paused_until.is_some_and(|t| tokio::time::Instant::now() < t) {
            continue;
        }
        paused_until = None;
        let wanted = theirs.uplink_up
            && shared.uplink.down_for() >= Duration::from_secs(shared.settings.custody_after_s);
        if !wanted {
            if handover.in_flight.is_empty() {
                // Rows not acknowledged are offered again from the start
                // next time (the neighbour de-duplicates).
                handover.cursor = 0;
                release_custody(shared, index);
            }
            continue;
        }
        if shared
            .custodian
            .compare_exchange(NO_CUSTODIAN, index, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
            && shared.custodian.load(Ordering::SeqCst) != index
        {
            continue;
        }
        shared.state.update(index, |v| v.custody_active = true);
        let room = (shared.settings.window as usize).saturating_sub(handover.in_flight.len());
        if room == 0 {
            continue;
        }
        let rows = shared
            .store
            .pending(handover.cursor, room)
            .await
            .map_err(|e| format!("store: {e}"))?;
        if rows.is_empty() {
            continue;
        }
        handover.cursor = rows.last().map_or(handover.cursor, |r| r.seq);
        handover.in_flight.extend(rows.iter().map(|r| r.seq));
        let rows = rows.iter().map(Row::from_entry).collect();
        wire::write_message(&mut writer, &Message::Rows { rows })
            .await
            .map_err(|e| e.to_string())?;
    }
}

#[derive(Default)]
struct Handover {
    /// Highest seq offered on this connection.
    cursor: u64,
    /// Offered, not yet acknowledged or refused.
    in_flight: BTreeSet<u64>,
}
