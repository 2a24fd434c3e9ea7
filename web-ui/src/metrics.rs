//! `/metrics` in the Prometheus text exposition format (version 0.0.4), written by hand.
//!
//! The format is a few lines of text per metric family: `# HELP`, `# TYPE`, then samples.
//! Writing it directly from the status snapshot keeps one source of truth (the numbers on
//! the page and on the graph are the same numbers) and saves a metrics registry the
//! gateway would otherwise have to keep in step with its own counters.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use crate::model::{now_ms, Liveness, Neighbor, Status};
use crate::peers::Peers;
use crate::routes::{AppState, ProviderFailed};

const CONTENT_TYPE_VALUE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn handler(State(state): State<AppState>) -> Result<Response, ProviderFailed> {
    let (status, neighbors, peers) = state
        .ask(|view| (view.status(), view.neighbors(), view.peers()))
        .await?;
    let mut body = render(&status, &neighbors, now_ms());
    body.push_str(&render_peers(&peers));
    Ok(([(CONTENT_TYPE, CONTENT_TYPE_VALUE)], body).into_response())
}

/// The kind of a metric family, as written on its `# TYPE` line.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Accumulates the exposition text; every family starts with its HELP and TYPE lines.
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<f64>) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (key, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value.into()));
    }
}

/// Every metric the gateway exposes, from one snapshot.
pub fn render(status: &Status, neighbors: &[Neighbor], now_ms: u64) -> String {
    let mut out = Exposition {
        text: String::with_capacity(4096),
    };

    out.family(
        "seed_gateway_info",
        Kind::Gauge,
        "Gateway identity; the value is always 1.",
    );
    out.sample(
        "seed_gateway_info",
        &[
            ("gateway_id", &status.gateway.id),
            ("version", &status.gateway.version),
        ],
        1u32,
    );
    out.family(
        "seed_gateway_uptime_seconds",
        Kind::Gauge,
        "Seconds since the gateway daemon started.",
    );
    out.sample(
        "seed_gateway_uptime_seconds",
        &[],
        status.gateway.uptime_s as f64,
    );

    links(&mut out, status);
    frames(&mut out, status);
    fragments(&mut out, status);
    uplink(&mut out, status, now_ms);
    duty_cycle(&mut out, status);
    storage(&mut out, status);

    out.family(
        "seed_neighbors",
        Kind::Gauge,
        "Devices in the neighbor table by liveness.",
    );
    for liveness in [Liveness::Active, Liveness::Stale, Liveness::Gone] {
        let count = neighbors.iter().filter(|n| n.liveness == liveness).count();
        out.sample(
            "seed_neighbors",
            &[("liveness", liveness.as_str())],
            count as f64,
        );
    }

    let mail = &status.mailboxes;
    out.family(
        "seed_mailbox_messages",
        Kind::Gauge,
        "Downlink messages by delivery state.",
    );
    for (state, count) in [
        ("pending", mail.pending),
        ("delivered", mail.delivered),
        ("failed", mail.failed),
        ("expired", mail.expired),
    ] {
        out.sample("seed_mailbox_messages", &[("state", state)], count as f64);
    }

    out.text
}

/// The `seed_peer_*` families (none without neighbours configured).
pub fn render_peers(peers: &Peers) -> String {
    let mut out = Exposition {
        text: String::new(),
    };
    if peers.peers.is_empty() && peers.refused_total.is_empty() {
        return out.text;
    }
    type Figure = fn(&crate::peers::Peer) -> f64;
    let families: [(&str, Kind, &str, Figure); 17] = [
        (
            "seed_peer_outbound_connected",
            Kind::Gauge,
            "1 while the link we dial to the neighbour is up.",
            |p| f64::from(u8::from(p.outbound.connected)),
        ),
        (
            "seed_peer_inbound_connected",
            Kind::Gauge,
            "1 while the link the neighbour dials to us is up.",
            |p| f64::from(u8::from(p.inbound.connected)),
        ),
        (
            "seed_peer_held_for_peer",
            Kind::Gauge,
            "The neighbour's messages this gateway holds, not yet published.",
            |p| p.held_for_peer as f64,
        ),
        (
            "seed_peer_held_by_peer",
            Kind::Gauge,
            "This gateway's messages the neighbour holds, as it last said.",
            |p| p.held_by_peer as f64,
        ),
        (
            "seed_peer_handed_over_total",
            Kind::Counter,
            "This gateway's messages the neighbour took into custody.",
            |p| p.handed_over_total as f64,
        ),
        (
            "seed_peer_refused_by_peer_total",
            Kind::Counter,
            "This gateway's messages the neighbour refused (kept here).",
            |p| p.refused_by_peer_total as f64,
        ),
        (
            "seed_peer_relayed_for_peer_total",
            Kind::Counter,
            "The neighbour's messages this gateway's broker acknowledged.",
            |p| p.relayed_for_peer_total as f64,
        ),
        (
            "seed_peer_handed_over_unpublished",
            Kind::Gauge,
            "This gateway's messages the neighbour took and has not reported published (kept here until it does).",
            |p| p.handed_over_unpublished as f64,
        ),
        (
            "seed_peer_reclaimed_total",
            Kind::Counter,
            "This gateway's handed-over messages that came back to its outbox (the neighbour's store was replaced, or it stalled).",
            |p| p.reclaimed_total as f64,
        ),
        (
            "seed_peer_mail_held_for_peer",
            Kind::Gauge,
            "Copies of the neighbour's downlinks this gateway holds.",
            |p| p.mail.held_for_peer as f64,
        ),
        (
            "seed_peer_mail_delivered_unsettled",
            Kind::Gauge,
            "Of those, delivered here and not yet settled by the neighbour.",
            |p| p.mail.delivered_unsettled as f64,
        ),
        (
            "seed_peer_mail_held_by_peer",
            Kind::Gauge,
            "Copies of this gateway's downlinks the neighbour holds or must drop.",
            |p| p.mail.held_by_peer as f64,
        ),
        (
            "seed_peer_mail_offered_total",
            Kind::Counter,
            "This gateway's downlinks the neighbour took a copy of.",
            |p| p.mail.offered_total as f64,
        ),
        (
            "seed_peer_mail_taken_total",
            Kind::Counter,
            "The neighbour's downlinks this gateway took a copy of.",
            |p| p.mail.taken_total as f64,
        ),
        (
            "seed_peer_mail_delivered_by_peer_total",
            Kind::Counter,
            "This gateway's downlinks the neighbour delivered.",
            |p| p.mail.delivered_by_peer_total as f64,
        ),
        (
            "seed_peer_mail_delivered_for_peer_total",
            Kind::Counter,
            "The neighbour's downlinks this gateway delivered.",
            |p| p.mail.delivered_for_peer_total as f64,
        ),
        (
            "seed_peer_mail_withdrawn_total",
            Kind::Counter,
            "Copies of the neighbour's downlinks dropped undelivered on its word.",
            |p| p.mail.withdrawn_total as f64,
        ),
    ];
    for (name, kind, help, figure) in families {
        out.family(name, kind, help);
        for peer in &peers.peers {
            out.sample(
                name,
                &[("peer", &peer.name), ("gateway_id", &peer.gateway_id)],
                figure(peer),
            );
        }
    }
    out.family(
        "seed_peer_connections_refused_total",
        Kind::Counter,
        "Neighbour connections turned away, by reason.",
    );
    for (reason, count) in &peers.refused_total {
        out.sample(
            "seed_peer_connections_refused_total",
            &[("reason", reason)],
            *count as f64,
        );
    }
    out.text
}

fn links(out: &mut Exposition, status: &Status) {
    out.family(
        "seed_link_up",
        Kind::Gauge,
        "1 when the radio link is up, 0 when down or connecting.",
    );
    for link in &status.links {
        let up = u32::from(link.state == crate::model::LinkState::Up);
        out.sample(
            "seed_link_up",
            &[("link", &link.name), ("kind", &link.kind)],
            up,
        );
    }
    out.family(
        "seed_link_frames_total",
        Kind::Counter,
        "Frames seen by each radio link, by link-layer outcome.",
    );
    for link in &status.links {
        for (outcome, count) in [
            ("received", link.frames_received),
            ("malformed", link.malformed),
            ("bad_crc", link.bad_crc),
        ] {
            out.sample(
                "seed_link_frames_total",
                &[("link", &link.name), ("outcome", outcome)],
                count as f64,
            );
        }
    }
    out.family(
        "seed_link_device_errors_total",
        Kind::Counter,
        "Errors talking to each radio device (I/O errors, restarts).",
    );
    for link in &status.links {
        out.sample(
            "seed_link_device_errors_total",
            &[("link", &link.name)],
            link.device_errors as f64,
        );
    }
    out.family(
        "seed_link_tx_held_total",
        Kind::Counter,
        "Transmissions each link held until it knew where to send them, by \
         outcome: held (all of them), too_late (not sent: the device had stopped \
         listening, or the hold was full).",
    );
    for link in &status.links {
        for (outcome, count) in [("held", link.tx_held), ("too_late", link.tx_too_late)] {
            out.sample(
                "seed_link_tx_held_total",
                &[("link", &link.name), ("outcome", outcome)],
                count as f64,
            );
        }
    }
    out.family(
        "seed_link_last_rssi_dbm",
        Kind::Gauge,
        "Signal strength of the last frame heard on each link.",
    );
    for link in &status.links {
        if let Some(rssi) = link.last_rssi {
            out.sample("seed_link_last_rssi_dbm", &[("link", &link.name)], rssi);
        }
    }
    out.family(
        "seed_link_last_snr_db",
        Kind::Gauge,
        "Signal-to-noise ratio of the last frame heard on each link.",
    );
    for link in &status.links {
        if let Some(snr) = link.last_snr {
            out.sample("seed_link_last_snr_db", &[("link", &link.name)], snr);
        }
    }
}

fn frames(out: &mut Exposition, status: &Status) {
    out.family(
        "seed_frames_total",
        Kind::Counter,
        "Decoded frames by radio link and verification outcome.",
    );
    for link in &status.links {
        for (outcome, count) in link.frames.outcomes() {
            out.sample(
                "seed_frames_total",
                &[("link", &link.name), ("outcome", outcome)],
                count as f64,
            );
        }
    }
}

fn fragments(out: &mut Exposition, status: &Status) {
    let name = "seed_fragments_total";
    out.family(
        name,
        Kind::Counter,
        "Messages split over several radio packets, by reassembly outcome (pieces for malformed and duplicate).",
    );
    let f = &status.fragments;
    for (outcome, count) in [
        ("completed", f.completed),
        ("timed_out", f.timed_out),
        ("evicted_for_memory", f.evicted_for_memory),
        ("malformed", f.malformed),
        ("duplicate", f.duplicates),
    ] {
        out.sample(name, &[("outcome", outcome)], count as f64);
    }
}

fn uplink(out: &mut Exposition, status: &Status, now_ms: u64) {
    let uplink = &status.uplink;
    out.family(
        "seed_uplink_connected",
        Kind::Gauge,
        "1 when connected to the MQTT broker.",
    );
    out.sample("seed_uplink_connected", &[], u32::from(uplink.connected));
    out.family(
        "seed_uplink_published_total",
        Kind::Counter,
        "Messages acknowledged by the broker since start.",
    );
    out.sample(
        "seed_uplink_published_total",
        &[],
        uplink.published_total as f64,
    );
    out.family(
        "seed_uplink_dropped_total",
        Kind::Counter,
        "Messages deleted before the broker acknowledged them.",
    );
    out.sample(
        "seed_uplink_dropped_total",
        &[],
        uplink.dropped_total as f64,
    );
    out.family(
        "seed_queue_depth",
        Kind::Gauge,
        "Stored messages waiting to be published.",
    );
    out.sample("seed_queue_depth", &[], uplink.backlog as f64);
    out.family(
        "seed_queue_oldest_age_seconds",
        Kind::Gauge,
        "Age of the oldest message waiting to be published (0 when none).",
    );
    let oldest_age = uplink
        .oldest_pending_ms
        .map(|oldest| now_ms.saturating_sub(oldest) as f64 / 1000.0)
        .unwrap_or(0.0);
    out.sample("seed_queue_oldest_age_seconds", &[], oldest_age);

    let latency = &uplink.publish_latency;
    let name = "seed_uplink_publish_latency_seconds";
    out.family(
        name,
        Kind::Histogram,
        "Time from handing a message to MQTT to the broker's acknowledgement.",
    );
    let mut cumulative = 0u64;
    for (index, bound) in latency.bounds_s.iter().enumerate() {
        cumulative += latency.counts.get(index).copied().unwrap_or(0);
        let le = number(*bound);
        out.sample(&format!("{name}_bucket"), &[("le", &le)], cumulative as f64);
    }
    out.sample(
        &format!("{name}_bucket"),
        &[("le", "+Inf")],
        latency.count() as f64,
    );
    out.sample(&format!("{name}_sum"), &[], latency.sum_s);
    out.sample(&format!("{name}_count"), &[], latency.count() as f64);
}

fn duty_cycle(out: &mut Exposition, status: &Status) {
    out.family(
        "seed_duty_cycle_used_ratio",
        Kind::Gauge,
        "Share of the band's airtime allowance used in the current window (1 = all).",
    );
    for band in &status.duty_cycle {
        out.sample(
            "seed_duty_cycle_used_ratio",
            &[("band", &band.band)],
            f64::from(band.percent) / 100.0,
        );
    }
    out.family(
        "seed_duty_cycle_used_seconds",
        Kind::Gauge,
        "Transmit airtime used in the band's current window.",
    );
    for band in &status.duty_cycle {
        out.sample(
            "seed_duty_cycle_used_seconds",
            &[("band", &band.band)],
            band.used_ms as f64 / 1000.0,
        );
    }
    out.family(
        "seed_duty_cycle_budget_seconds",
        Kind::Gauge,
        "Transmit airtime allowed per window in the band.",
    );
    for band in &status.duty_cycle {
        out.sample(
            "seed_duty_cycle_budget_seconds",
            &[("band", &band.band)],
            band.budget_ms as f64 / 1000.0,
        );
    }
}

fn storage(out: &mut Exposition, status: &Status) {
    let storage = &status.storage;
    out.family(
        "seed_store_bytes",
        Kind::Gauge,
        "Bytes used by the message store.",
    );
    out.sample("seed_store_bytes", &[], storage.bytes_used as f64);
    out.family(
        "seed_store_quota_bytes",
        Kind::Gauge,
        "Configured ceiling for the message store.",
    );
    out.sample("seed_store_quota_bytes", &[], storage.quota_bytes as f64);
    out.family(
        "seed_store_writable",
        Kind::Gauge,
        "1 when the message store accepts writes.",
    );
    out.sample("seed_store_writable", &[], u32::from(storage.writable));
}

/// Integers without a fraction, everything else in Rust's shortest round-trip form, and
/// the special values spelled the way Prometheus reads them.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text escapes backslash and newline.
fn escape_help(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_the_way_prometheus_reads_them() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(-87.5), "-87.5");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_help("x\\y\nz"), "x\\\\y\\nz");
    }
}
