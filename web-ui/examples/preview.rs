//! Serves the status page from the test fixture, to look at it in a browser without a
//! gateway: `cargo run -p web-ui --example preview -- 127.0.0.1:8090 [offline|ok|bad]`.
//! `offline` (the default) is the fixture as it is: Internet down for 3 h. `ok` connects the
//! uplink; `bad` also unplugs a radio and fills the storage.
//! The admin password is the fixture's (`tests/common/fixture.rs`). Every few seconds a
//! frame "arrives" and an event is pushed, so the live updates can be watched.

#[path = "../tests/common/fixture.rs"]
mod fixture;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use web_ui::{now_ms, EventLevel, EventView, LinkState, LiveEvent, QuotaState};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let scenario = std::env::args().nth(2).unwrap_or_else(|| "offline".into());
    let fixture = Arc::new(fixture::Fixture::new());
    {
        let mut status = fixture.status.lock().unwrap();
        match scenario.as_str() {
            "ok" => {
                status.uplink.connected = true;
                status.uplink.backlog = 0;
                status.uplink.oldest_pending_ms = None;
                status.uplink.last_publish_ms = Some(now_ms() - 20_000);
                status.uplink.last_error = None;
            }
            "bad" => {
                status.links[0].state = LinkState::Down;
                status.links[0].detail = "serial device /dev/ttyUSB0 unplugged".into();
                status.links[1].state = LinkState::Down;
                status.links[1].detail = "no packet forwarder heard on 127.0.0.1:1700".into();
                status.storage.quota_state = QuotaState::Full;
                status.storage.bytes_used = status.storage.quota_bytes;
            }
            _ => {}
        }
    }
    let (listener, local) = web_ui::bind(addr).await?;
    println!(
        "status page: http://{local}/  (admin password: {})",
        fixture::PASSWORD
    );

    let ticker = Arc::clone(&fixture);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(7));
        let mut heard = 0u64;
        loop {
            tick.tick().await;
            heard += 1;
            let event = EventView {
                at_ms: now_ms(),
                level: EventLevel::Info,
                kind: "preview".into(),
                text: format!("Preview: message {heard} heard."),
            };
            {
                // As the trait asks: a pushed event is also in the next status's list.
                let mut status = ticker.status.lock().unwrap();
                status.links[0].frames_received += 1;
                status.links[0].last_frame_ms = Some(now_ms());
                if let Some(last) = status.traffic_24h.last_mut() {
                    *last += 1;
                }
                status.events.insert(0, event.clone());
                status.events.truncate(20);
            }
            let _ = ticker.live.send(LiveEvent::Event(event));
        }
    });

    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    web_ui::serve(listener, fixture, shutdown).await
}
