//! The status in a kiosk keeper's words.
//!
//! The person looking at the page is not a developer: "Internet: offline for 3 h, 1,204
//! messages waiting, nothing lost" tells them what they need; `connected=false, backlog=1204`
//! does not. The sentences are built here, on the server, from the same snapshot the JSON
//! carries, so they are unit-tested and every client (the page, a future CLI) says the same.
//! The page only places them; it never re-derives them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{
    BandView, LinkState, LinkView, Liveness, MailboxView, Neighbor, QuotaState, Status,
    StorageView, UplinkView,
};

/// How worried the reader should be about one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Bad,
}

/// One sentence and its colour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub level: Level,
    pub text: String,
}

impl Line {
    fn new(level: Level, text: impl Into<String>) -> Line {
        Line {
            level,
            text: text.into(),
        }
    }
}

/// The sentences of the status page, one per section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The one-glance answer: does it work, and if not, why.
    pub verdict: Line,
    pub uplink: Line,
    /// Per radio link, keyed by link name.
    pub links: BTreeMap<String, Line>,
    /// Per duty-cycle band, keyed by band name.
    pub duty_cycle: BTreeMap<String, Line>,
    pub storage: Line,
    pub frames: Line,
    pub mailboxes: Line,
    pub neighbors: Line,
    pub traffic: Line,
    /// Split messages that went wrong; absent (null) while nothing did.
    pub fragments: Option<Line>,
    /// How long messages took from this gateway's disk to the broker's
    /// acknowledgement; absent until one has been published.
    pub publish_latency: Option<Line>,
    /// The software and its latest update; absent when updates are off.
    pub update: Option<Line>,
}

/// Builds every sentence from one snapshot; `now_ms` is the gateway's clock.
pub fn summarize(status: &Status, neighbors: &[Neighbor], now_ms: u64) -> Summary {
    let uplink = uplink_line(&status.uplink, now_ms);
    let links: BTreeMap<String, Line> = status
        .links
        .iter()
        .map(|link| (link.name.clone(), link_line(link, now_ms)))
        .collect();
    let duty_cycle: BTreeMap<String, Line> = status
        .duty_cycle
        .iter()
        .map(|band| (band.band.clone(), band_line(band)))
        .collect();
    let storage = storage_line(&status.storage);
    Summary {
        verdict: verdict(status, now_ms),
        uplink,
        links,
        duty_cycle,
        storage,
        frames: frames_line(status),
        mailboxes: mailbox_line(&status.mailboxes),
        neighbors: neighbors_line(neighbors),
        traffic: traffic_line(&status.traffic_24h),
        fragments: fragments_line(&status.fragments),
        publish_latency: latency_line(&status.uplink.publish_latency),
        update: status.update.as_ref().map(update_line),
    }
}

/// "Installing version 2.1.0: 40 %." / "Version 2.1.0 refused: …".
fn update_line(u: &crate::model::UpdateView) -> Line {
    let version = u.version.as_deref().unwrap_or("?");
    let running = &u.running_version;
    let percent = u.percent.map(|p| format!(" {p} %")).unwrap_or_default();
    let because = u
        .reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    match u.state.as_str() {
        "idle" => Line::new(Level::Ok, format!("Software version {running}. No update in progress.")),
        "downloading" => Line::new(Level::Ok, format!("Downloading update {version}:{percent}. Everything keeps working meanwhile.")),
        "verifying" => Line::new(Level::Ok, format!("Checking update {version} (signature, board, version).")),
        "installing" => Line::new(Level::Ok, format!("Installing update {version}:{percent}. The gateway restarts when it is done.")),
        "rebooting" => Line::new(Level::Ok, format!("Update {version} installed; the gateway is restarting into it.")),
        "health_check" => Line::new(Level::Ok, format!("Running version {running} for the first time; checking that everything works.")),
        "installed" => Line::new(Level::Ok, format!("Updated to version {version}; it works and is kept.")),
        "health_check_failed" => Line::new(Level::Warn, format!("Version {version} did not work{because}. Trying again, then going back to the previous version.")),
        "rolled_back" => Line::new(Level::Warn, format!("Update {version} did not work and was undone; version {running} runs again.")),
        "refused" => Line::new(Level::Warn, format!("Update {version} refused{because}. Nothing was changed.")),
        "failed" => Line::new(Level::Warn, format!("Update {version} failed{because}. Nothing was changed.")),
        other => Line::new(Level::Ok, format!("Update {version}: {other}.")),
    }
}

/// "Half reached the broker within 0.25 s, 9 in 10 within 1 s (1,234 since start)."
fn latency_line(histogram: &crate::model::LatencyHistogram) -> Option<Line> {
    let within = |share: f64| {
        histogram
            .bound_for_share(share)
            .map(|bound| match histogram.bounds_s.last() {
                Some(last) if bound.is_infinite() => format!("more than {last} s"),
                _ => format!("within {bound} s"),
            })
    };
    let (half, most) = (within(0.5)?, within(0.9)?);
    Some(Line {
        level: Level::Ok,
        text: format!(
            "Half reached the broker {half}, 9 in 10 {most} ({} since start).",
            thousands(histogram.count())
        ),
    })
}

/// "3 split messages could not be completed (pieces missing); 2 broken pieces ignored."
fn fragments_line(f: &crate::model::FragmentCounters) -> Option<Line> {
    let mut parts = Vec::new();
    match f.incomplete() {
        0 => {}
        1 => parts.push("1 split message could not be completed (pieces missing)".to_string()),
        n => parts.push(format!(
            "{} split messages could not be completed (pieces missing)",
            thousands(n)
        )),
    }
    match f.malformed {
        0 => {}
        1 => parts.push("1 broken message piece ignored".to_string()),
        n => parts.push(format!("{} broken message pieces ignored", thousands(n))),
    }
    if parts.is_empty() {
        return None;
    }
    Some(Line {
        level: Level::Warn,
        text: format!("{}.", capitalize(&parts.join("; "))),
    })
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// "Everything works." or the most serious problems first.
fn verdict(status: &Status, now_ms: u64) -> Line {
    let mut bad = Vec::new();
    let mut warn = Vec::new();

    if !status.storage.writable {
        bad.push("messages cannot be saved".to_string());
    } else if status.storage.quota_state == QuotaState::Full {
        bad.push("storage is full, new messages are refused".to_string());
    } else if status.storage.quota_state == QuotaState::Warning {
        warn.push("storage is almost full".to_string());
    }

    let working_links = status
        .links
        .iter()
        .filter(|link| link.state == LinkState::Up)
        .count();
    if status.links.is_empty() {
        bad.push("no radio is set up".to_string());
    } else if working_links == 0 {
        bad.push("no radio is listening".to_string());
    } else {
        for link in status.links.iter().filter(|l| l.state != LinkState::Up) {
            warn.push(format!("radio {} is not working", link.name));
        }
    }

    let uplink = &status.uplink;
    if !uplink.configured {
        warn.push("Internet is not set up".to_string());
    } else if !uplink.connected {
        match uplink.since_ms {
            Some(since) => warn.push(format!(
                "Internet offline for {}",
                duration_words(now_ms.saturating_sub(since))
            )),
            None => warn.push("Internet not connected yet".to_string()),
        }
    }
    if uplink.dropped_total > 0 {
        warn.push(format!("{} lost", messages(uplink.dropped_total)));
    }

    for band in status.duty_cycle.iter().filter(|b| b.percent >= 90.0) {
        warn.push(format!("radio airtime almost used up ({})", band.band));
    }

    if !bad.is_empty() {
        bad.extend(warn);
        Line::new(Level::Bad, format!("Not working: {}.", bad.join("; ")))
    } else if !warn.is_empty() {
        Line::new(
            Level::Warn,
            format!("Working, but needs attention: {}.", warn.join("; ")),
        )
    } else {
        Line::new(Level::Ok, "Everything works.")
    }
}

fn uplink_line(uplink: &UplinkView, now_ms: u64) -> Line {
    let lost = if uplink.dropped_total == 0 {
        "nothing lost".to_string()
    } else {
        format!("{} lost", messages(uplink.dropped_total))
    };
    let lost_level = if uplink.dropped_total == 0 {
        Level::Warn
    } else {
        Level::Bad
    };

    if !uplink.configured {
        let kept = match uplink.backlog {
            0 => String::new(),
            n => format!(" ({} kept)", thousands(n)),
        };
        return Line::new(
            lost_level,
            format!("Internet: not set up. Messages are kept on the gateway{kept}."),
        );
    }

    if uplink.connected {
        let level = if uplink.dropped_total == 0 {
            Level::Ok
        } else {
            Level::Bad
        };
        let mut text = if uplink.backlog == 0 {
            "Internet: connected, nothing waiting".to_string()
        } else {
            format!(
                "Internet: connected, sending {}",
                plural(uplink.backlog, "waiting message", "waiting messages")
            )
        };
        if let Some(last) = uplink.last_publish_ms {
            text.push_str(&format!(
                ", last message sent {}",
                ago(now_ms.saturating_sub(last))
            ));
        }
        if uplink.dropped_total > 0 {
            text.push_str(&format!(", {lost}"));
        }
        text.push('.');
        return Line::new(level, text);
    }

    let offline = match uplink.since_ms {
        Some(since) => format!(
            "offline for {}",
            duration_words(now_ms.saturating_sub(since))
        ),
        None => "not connected yet".to_string(),
    };
    let waiting = match uplink.backlog {
        0 => "nothing waiting".to_string(),
        n => format!("{} waiting", messages(n)),
    };
    Line::new(
        lost_level,
        format!("Internet: {offline}, {waiting}, {lost}."),
    )
}

fn link_line(link: &LinkView, now_ms: u64) -> Line {
    let name = &link.name;
    match link.state {
        LinkState::Up => {
            let mut text = if link.frames_received == 0 {
                format!("Radio {name}: working, nothing heard yet")
            } else {
                format!(
                    "Radio {name}: working, {} heard",
                    messages(link.frames_received)
                )
            };
            if let Some(last) = link.last_frame_ms {
                text.push_str(&format!(", last one {}", ago(now_ms.saturating_sub(last))));
            }
            if let Some(rssi) = link.last_rssi {
                text.push_str(&format!(", signal {}", signal_words(rssi, link.last_snr)));
            }
            let unreadable = link.malformed + link.bad_crc + link.frames.malformed;
            if unreadable > 0 {
                text.push_str(&format!(", {} unreadable", thousands(unreadable)));
            }
            // Which radio brings forged or replayed frames is worth telling.
            let not_genuine = link.frames.bad_signature + link.frames.replayed;
            if not_genuine > 0 {
                text.push_str(&format!(
                    ", {} refused as not genuine",
                    thousands(not_genuine)
                ));
            }
            text.push('.');
            Line::new(Level::Ok, text)
        }
        LinkState::Connecting => Line::new(
            Level::Warn,
            format!("Radio {name}: starting{}.", detail_suffix(&link.detail)),
        ),
        LinkState::Down => {
            let since = match link.since_ms {
                Some(since) => format!(" for {}", duration_words(now_ms.saturating_sub(since))),
                None => String::new(),
            };
            Line::new(
                Level::Bad,
                format!(
                    "Radio {name}: not working{since}{}.",
                    detail_suffix(&link.detail)
                ),
            )
        }
    }
}

fn detail_suffix(detail: &str) -> String {
    let detail = detail.trim().trim_end_matches('.');
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

/// LoRa signal strength in words, with the numbers for the technician.
fn signal_words(rssi: f32, snr: Option<f32>) -> String {
    let word = if rssi >= -90.0 {
        "strong"
    } else if rssi >= -105.0 {
        "good"
    } else if rssi >= -115.0 {
        "weak"
    } else {
        "very weak"
    };
    match snr {
        Some(snr) => format!("{word} ({} dBm, SNR {} dB)", signed(rssi), signed(snr)),
        None => format!("{word} ({} dBm)", signed(rssi)),
    }
}

/// A number with a real minus sign, rounded to whole units.
fn signed(value: f32) -> String {
    let rounded = value.round() as i64;
    if rounded < 0 {
        format!("\u{2212}{}", -rounded)
    } else {
        rounded.to_string()
    }
}

fn band_line(band: &BandView) -> Line {
    let window = if band.window_s == 3600 {
        "hourly".to_string()
    } else {
        duration_words(band.window_s * 1000)
    };
    let percent = band.percent.round() as u64;
    if band.percent >= 100.0 {
        Line::new(
            Level::Bad,
            format!(
                "Airtime {}: {window} allowance used up, replies wait until it frees up.",
                band.band
            ),
        )
    } else if band.percent >= 90.0 {
        Line::new(
            Level::Warn,
            format!(
                "Airtime {}: {percent}% of the {window} allowance used, almost used up.",
                band.band
            ),
        )
    } else {
        Line::new(
            Level::Ok,
            format!(
                "Airtime {}: {percent}% of the {window} allowance used.",
                band.band
            ),
        )
    }
}

fn storage_line(storage: &StorageView) -> Line {
    let used = bytes_words(storage.bytes_used);
    let quota = bytes_words(storage.quota_bytes);
    let percent = if storage.quota_bytes == 0 {
        0
    } else {
        (storage.bytes_used as u128 * 100 / storage.quota_bytes as u128) as u64
    };
    if !storage.writable {
        return Line::new(
            Level::Bad,
            "Storage cannot be written: new messages are not being saved.",
        );
    }
    match storage.quota_state {
        QuotaState::Ok => Line::new(
            Level::Ok,
            format!("Storage: {used} of {quota} used ({percent}%)."),
        ),
        QuotaState::Warning => Line::new(
            Level::Warn,
            format!("Storage almost full: {used} of {quota} used ({percent}%)."),
        ),
        QuotaState::Full => Line::new(
            Level::Bad,
            format!(
                "Storage full: {used} of {quota} used. New messages are refused until waiting ones are sent."
            ),
        ),
    }
}

fn frames_line(status: &Status) -> Line {
    let frames = &status.frames;
    let mut text = format!("{} accepted", messages(frames.accepted));
    if frames.duplicates > 0 {
        text.push_str(&format!(
            ", {} repeated (ignored)",
            thousands(frames.duplicates)
        ));
    }
    let rejected = frames.rejected();
    if rejected > 0 {
        text.push_str(&format!(", {} rejected", thousands(rejected)));
    }
    text.push('.');
    let level = if frames.refused_full > 0 {
        Level::Warn
    } else {
        Level::Ok
    };
    Line::new(level, text)
}

fn mailbox_line(mail: &MailboxView) -> Line {
    let waiting = match (mail.pending, mail.devices_waiting) {
        (0, _) => "No messages waiting for devices".to_string(),
        (n, 1) => format!("{} waiting for 1 device", messages(n)),
        (n, devices) => format!("{} waiting for {} devices", messages(n), thousands(devices)),
    };
    let mut text = format!(
        "{waiting}. {} delivered, {} failed, {} expired.",
        thousands(mail.delivered),
        thousands(mail.failed),
        thousands(mail.expired)
    );
    if mail.receipts_waiting > 0 {
        text.push_str(&format!(
            " {} waiting to go back to the Internet.",
            plural(mail.receipts_waiting, "receipt", "receipts")
        ));
    }
    Line::new(Level::Ok, text)
}

fn neighbors_line(neighbors: &[Neighbor]) -> Line {
    let count = |liveness| neighbors.iter().filter(|n| n.liveness == liveness).count() as u64;
    let (active, stale, gone) = (
        count(Liveness::Active),
        count(Liveness::Stale),
        count(Liveness::Gone),
    );
    if neighbors.is_empty() {
        return Line::new(Level::Ok, "No devices heard yet.");
    }
    let mut text = format!("{} nearby", plural(active, "device", "devices"));
    if stale > 0 {
        text.push_str(&format!(", {} not heard recently", thousands(stale)));
    }
    if gone > 0 {
        text.push_str(&format!(", {} gone", thousands(gone)));
    }
    text.push('.');
    Line::new(Level::Ok, text)
}

fn traffic_line(traffic: &[u32]) -> Line {
    let total: u64 = traffic.iter().map(|&n| u64::from(n)).sum();
    Line::new(
        Level::Ok,
        format!("{} heard in the last 24 hours.", messages(total)),
    )
}

/// "1 message" / "1,204 messages".
pub fn messages(n: u64) -> String {
    plural(n, "message", "messages")
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{} {many}", thousands(n))
    }
}

/// 1204 → "1,204".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let first_group = match digits.len() % 3 {
        0 => 3,
        short => short,
    };
    let (head, rest) = digits.split_at(first_group.min(digits.len()));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    out.push_str(head);
    for group in rest.as_bytes().chunks(3) {
        out.push(',');
        out.extend(group.iter().map(|&b| char::from(b)));
    }
    out
}

/// A duration as a person says it: "45 s", "12 min", "1 h 25 min", "3 h", "4 days".
pub fn duration_words(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=7199 => match (s % 3600) / 60 {
            0 => "1 h".to_string(),
            minutes => format!("1 h {minutes} min"),
        },
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// "just now" or "12 min ago".
pub fn ago(ms: u64) -> String {
    if ms < 10_000 {
        "just now".to_string()
    } else {
        format!("{} ago", duration_words(ms))
    }
}

/// Decimal units as on a phone's storage screen: "950 B", "12 kB", "3.4 MB", "1.2 GB".
pub fn bytes_words(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = next;
    }
    if value < 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.0} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FrameCounters, Identity, LatencyHistogram};

    const NOW: u64 = 1_700_000_000_000;
    const HOUR: u64 = 3_600_000;

    fn uplink() -> UplinkView {
        UplinkView {
            configured: true,
            connected: true,
            broker: Some("mqtt://broker.local:1883".into()),
            since_ms: Some(NOW - 5 * HOUR),
            last_publish_ms: Some(NOW - 120_000),
            last_error: None,
            backlog: 0,
            oldest_pending_ms: None,
            published_total: 5000,
            dropped_total: 0,
            publish_latency: LatencyHistogram::default(),
        }
    }

    fn link(name: &str, state: LinkState) -> LinkView {
        LinkView {
            name: name.into(),
            kind: "rnode-serial".into(),
            state,
            detail: "/dev/ttyUSB0".into(),
            since_ms: Some(NOW - 14 * 60_000),
            frames_received: 1234,
            malformed: 0,
            bad_crc: 0,
            device_errors: 0,
            tx_held: 0,
            tx_too_late: 0,
            last_rssi: Some(-87.4),
            last_snr: Some(7.2),
            last_frame_ms: Some(NOW - 3_000),
            frames: FrameCounters::default(),
        }
    }

    fn status() -> Status {
        Status {
            gateway: Identity {
                id: "gw1".into(),
                version: "0.1.0".into(),
                uptime_s: 100,
            },
            uplink: uplink(),
            links: vec![link("rnode0", LinkState::Up)],
            duty_cycle: vec![BandView::new("g1", 360, 36_000, 3600)],
            storage: StorageView {
                bytes_used: 12_000_000,
                quota_bytes: 512_000_000,
                quota_state: QuotaState::Ok,
                writable: true,
            },
            frames: FrameCounters::default(),
            mailboxes: MailboxView::default(),
            events: vec![],
            traffic_24h: vec![0; 24],
            fragments: Default::default(),
            update: None,
        }
    }

    #[test]
    fn an_update_is_told_in_plain_words() {
        let mut st = status();
        assert_eq!(summarize(&st, &[], 0).update, None);
        st.update = Some(crate::model::UpdateView {
            state: "downloading".into(),
            version: Some("2.1.0".into()),
            running_version: "2.0.0".into(),
            percent: Some(40),
            ..Default::default()
        });
        let line = summarize(&st, &[], 0).update.expect("a sentence");
        assert_eq!(
            line.text,
            "Downloading update 2.1.0: 40 %. Everything keeps working meanwhile."
        );
        st.update = Some(crate::model::UpdateView {
            state: "refused".into(),
            version: Some("1.0.0".into()),
            running_version: "2.0.0".into(),
            reason: Some("version 1.0.0 is not newer than the running version 2.0.0".into()),
            ..Default::default()
        });
        let line = summarize(&st, &[], 0).update.expect("a sentence");
        assert_eq!(line.level, Level::Warn);
        assert!(line.text.contains("not newer"), "{}", line.text);
        assert!(line.text.ends_with("Nothing was changed."), "{}", line.text);
    }

    #[test]
    fn publish_latency_is_told_once_something_was_published() {
        let mut st = status();
        assert_eq!(summarize(&st, &[], 0).publish_latency, None);
        for seconds in [0.02, 0.03, 0.2, 0.4, 40.0] {
            st.uplink.publish_latency.observe(seconds);
        }
        assert_eq!(
            summarize(&st, &[], 0).publish_latency.map(|l| l.text),
            Some(
                "Half reached the broker within 0.25 s, 9 in 10 more than 30 s (5 since start)."
                    .into()
            )
        );
    }

    #[test]
    fn split_messages_are_mentioned_only_when_something_went_wrong() {
        let mut st = status();
        st.fragments.completed = 12;
        st.fragments.duplicates = 3;
        assert_eq!(summarize(&st, &[], 0).fragments, None);
        st.fragments.timed_out = 2;
        st.fragments.evicted_for_memory = 1;
        let line = summarize(&st, &[], 0).fragments.expect("a sentence");
        assert_eq!(line.level, Level::Warn);
        assert_eq!(
            line.text,
            "3 split messages could not be completed (pieces missing)."
        );
        st.fragments.malformed = 1;
        assert_eq!(
            summarize(&st, &[], 0).fragments.unwrap().text,
            "3 split messages could not be completed (pieces missing); 1 broken message piece ignored."
        );
    }

    #[test]
    fn offline_uplink_reads_like_the_issue_example() {
        let mut up = uplink();
        up.connected = false;
        up.since_ms = Some(NOW - 3 * HOUR - 5 * 60_000);
        up.backlog = 1204;
        let line = uplink_line(&up, NOW);
        assert_eq!(
            line.text,
            "Internet: offline for 3 h, 1,204 messages waiting, nothing lost."
        );
        assert_eq!(line.level, Level::Warn);
    }

    #[test]
    fn uplink_lines_cover_each_state() {
        assert_eq!(
            uplink_line(&uplink(), NOW).text,
            "Internet: connected, nothing waiting, last message sent 2 min ago."
        );

        let mut busy = uplink();
        busy.backlog = 1;
        busy.last_publish_ms = Some(NOW - 1_000);
        assert_eq!(
            uplink_line(&busy, NOW).text,
            "Internet: connected, sending 1 waiting message, last message sent just now."
        );

        let mut never = uplink();
        never.connected = false;
        never.since_ms = None;
        never.dropped_total = 3;
        let line = uplink_line(&never, NOW);
        assert_eq!(
            line.text,
            "Internet: not connected yet, nothing waiting, 3 messages lost."
        );
        assert_eq!(line.level, Level::Bad);

        let mut off = uplink();
        off.configured = false;
        off.connected = false;
        off.backlog = 20;
        assert_eq!(
            uplink_line(&off, NOW).text,
            "Internet: not set up. Messages are kept on the gateway (20 kept)."
        );
    }

    #[test]
    fn link_lines_say_what_a_keeper_needs() {
        let up = link_line(&link("rnode0", LinkState::Up), NOW);
        assert_eq!(
            up.text,
            "Radio rnode0: working, 1,234 messages heard, last one just now, \
             signal strong (\u{2212}87 dBm, SNR 7 dB)."
        );
        assert_eq!(up.level, Level::Ok);

        let mut noisy = link("rnode0", LinkState::Up);
        noisy.bad_crc = 4;
        noisy.frames.malformed = 1;
        noisy.frames.bad_signature = 2;
        noisy.frames.replayed = 1;
        assert_eq!(
            link_line(&noisy, NOW).text,
            "Radio rnode0: working, 1,234 messages heard, last one just now, \
             signal strong (\u{2212}87 dBm, SNR 7 dB), 5 unreadable, 3 refused as not genuine."
        );

        let mut down = link("rnode0", LinkState::Down);
        down.detail = "serial device unplugged".into();
        let line = link_line(&down, NOW);
        assert_eq!(
            line.text,
            "Radio rnode0: not working for 14 min (serial device unplugged)."
        );
        assert_eq!(line.level, Level::Bad);
    }

    #[test]
    fn verdict_ranks_problems() {
        let ok = summarize(&status(), &[], NOW);
        assert_eq!(ok.verdict, Line::new(Level::Ok, "Everything works."));

        let mut offline = status();
        offline.uplink.connected = false;
        offline.uplink.since_ms = Some(NOW - 3 * HOUR);
        let line = summarize(&offline, &[], NOW).verdict;
        assert_eq!(line.level, Level::Warn);
        assert_eq!(
            line.text,
            "Working, but needs attention: Internet offline for 3 h."
        );

        offline.links[0].state = LinkState::Down;
        let line = summarize(&offline, &[], NOW).verdict;
        assert_eq!(line.level, Level::Bad);
        assert_eq!(
            line.text,
            "Not working: no radio is listening; Internet offline for 3 h."
        );

        let mut full = status();
        full.storage.quota_state = QuotaState::Full;
        assert_eq!(summarize(&full, &[], NOW).verdict.level, Level::Bad);
    }

    #[test]
    fn storage_and_bands_and_mail() {
        assert_eq!(
            storage_line(&status().storage).text,
            "Storage: 12 MB of 512 MB used (2%)."
        );
        assert_eq!(
            band_line(&BandView::new("g1", 360, 36_000, 3600)).text,
            "Airtime g1: 1% of the hourly allowance used."
        );
        assert_eq!(
            band_line(&BandView::new("g1", 36_000, 36_000, 3600)).level,
            Level::Bad
        );
        let mail = MailboxView {
            pending: 3,
            devices_waiting: 2,
            delivered: 120,
            failed: 1,
            expired: 0,
            receipts_waiting: 0,
        };
        assert_eq!(
            mailbox_line(&mail).text,
            "3 messages waiting for 2 devices. 120 delivered, 1 failed, 0 expired."
        );
        let mail = MailboxView {
            receipts_waiting: 1,
            ..mail
        };
        assert!(mailbox_line(&mail)
            .text
            .ends_with(" 1 receipt waiting to go back to the Internet."));
    }

    #[test]
    fn numbers_and_durations_in_words() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1204), "1,204");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(duration_words(45_000), "45 s");
        assert_eq!(duration_words(12 * 60_000), "12 min");
        assert_eq!(duration_words(HOUR + 25 * 60_000), "1 h 25 min");
        assert_eq!(duration_words(3 * HOUR + 59 * 60_000), "3 h");
        assert_eq!(duration_words(4 * 24 * HOUR), "4 days");
        assert_eq!(bytes_words(950), "950 B");
        assert_eq!(bytes_words(3_400_000), "3.4 MB");
        assert_eq!(bytes_words(512_000_000), "512 MB");
    }
}
