//! Simulated devices and concentrators speaking the real wire protocols.
//!
//! - [`devices`]: Seed devices with their own keys, heartbeat schedules and
//!   retransmission, talking to an abstract [`devices::Air`].
//! - [`packet_forwarder`]: a Semtech packet forwarder (GWMP over UDP) that
//!   puts the air's packets in front of the gateway.
//! - [`rnode_device`]: an RNode on a pseudo-terminal, speaking KISS.

pub mod devices;
pub mod packet_forwarder;
pub mod rnode_device;

use std::net::SocketAddr;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::gwmp::Eui;
use devices::{run_fleet, Air, FleetOptions, FleetSummary};
use packet_forwarder::{PacketForwarder, PacketForwarderConfig};
use rnode_device::{RnodeDevice, RnodeDeviceOptions};

/// Runs a fleet behind an emulated RNode on a pseudo-terminal whose slave is
/// reachable at `path` (a symlink, re-pointed if the device is re-plugged).
/// The gateway's RNode link opens `path` as it would `/dev/ttyACM0`.
pub async fn fleet_over_rnode(
    path: std::path::PathBuf,
    options: FleetOptions,
    stop: CancellationToken,
) -> std::io::Result<FleetSummary> {
    let (device, _path) = RnodeDevice::start(RnodeDeviceOptions {
        link_path: Some(path),
        ..RnodeDeviceOptions::default()
    })?;
    let (uplink_tx, mut uplink_rx) = mpsc::channel::<devices::AirPacket>(1024);
    let (downlink_tx, _) = broadcast::channel(1024);
    let mut heard = device.subscribe_transmissions();
    let relay_down = downlink_tx.clone();
    let relay = tokio::spawn(async move {
        loop {
            tokio::select! {
                packet = uplink_rx.recv() => match packet {
                    Some(p) => device.inject(&p.bytes, p.rssi, p.snr),
                    None => break,
                },
                down = heard.recv() => match down {
                    Ok(d) => { let _ = relay_down.send(d.bytes); }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    });
    let air = Air {
        uplink: uplink_tx,
        downlink: downlink_tx,
    };
    let summary = tokio::select! {
        s = run_fleet(options, air) => s,
        _ = stop.cancelled() => FleetSummary::default(),
    };
    relay.abort();
    Ok(summary)
}

/// Runs a fleet behind an emulated Semtech packet forwarder that talks GWMP
/// to `server` over real UDP. Returns when the fleet is done (`messages`
/// mode) or `stop` is cancelled.
pub async fn fleet_over_gwmp(
    server: SocketAddr,
    options: FleetOptions,
    stop: CancellationToken,
) -> std::io::Result<FleetSummary> {
    let eui = Eui(options.seed.to_be_bytes());
    let forwarder = PacketForwarder::start(PacketForwarderConfig::new(server, eui)).await?;
    let (uplink_tx, mut uplink_rx) = mpsc::channel::<devices::AirPacket>(1024);
    let (downlink_tx, _) = broadcast::channel(1024);
    let mut heard = forwarder.subscribe_downlinks();
    let relay_down = downlink_tx.clone();
    let relay = tokio::spawn(async move {
        loop {
            tokio::select! {
                packet = uplink_rx.recv() => match packet {
                    Some(p) => {
                        if let Err(e) = forwarder.inject(&p.bytes, p.rssi, p.snr).await {
                            tracing::warn!("packet forwarder could not send: {e}");
                        }
                    }
                    None => break,
                },
                down = heard.recv() => match down {
                    Ok(d) => { let _ = relay_down.send(d.bytes); }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    });
    let air = Air {
        uplink: uplink_tx,
        downlink: downlink_tx,
    };
    let summary = tokio::select! {
        s = run_fleet(options, air) => s,
        _ = stop.cancelled() => FleetSummary::default(),
    };
    relay.abort();
    Ok(summary)
}
