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

/// A simulated concentrator as the fleet sees it: it puts the devices'
/// packets on its real wire protocol and reports, as a broadcast, what the
/// gateway transmitted through it.
trait Concentrator: Send + 'static {
    type Heard: Clone + Send + 'static;
    fn inject(&self, packet: &devices::AirPacket) -> impl std::future::Future<Output = ()> + Send;
    fn bytes(heard: Self::Heard) -> Vec<u8>;
}

impl Concentrator for RnodeDevice {
    type Heard = rnode_device::DeviceTransmission;
    async fn inject(&self, p: &devices::AirPacket) {
        RnodeDevice::inject(self, &p.bytes, p.rssi, p.snr);
    }
    fn bytes(heard: Self::Heard) -> Vec<u8> {
        heard.bytes
    }
}

impl Concentrator for PacketForwarder {
    type Heard = packet_forwarder::HeardDownlink;
    async fn inject(&self, p: &devices::AirPacket) {
        if let Err(e) = PacketForwarder::inject(self, &p.bytes, p.rssi, p.snr).await {
            tracing::warn!("packet forwarder could not send: {e}");
        }
    }
    fn bytes(heard: Self::Heard) -> Vec<u8> {
        heard.bytes
    }
}

/// Runs `options` behind `concentrator`, relaying packets both ways.
async fn fleet_behind<C: Concentrator>(
    concentrator: C,
    mut heard: broadcast::Receiver<C::Heard>,
    options: FleetOptions,
    stop: CancellationToken,
) -> FleetSummary {
    let (uplink_tx, mut uplink_rx) = mpsc::channel::<devices::AirPacket>(1024);
    let (downlink_tx, _) = broadcast::channel(1024);
    let relay_down = downlink_tx.clone();
    let relay = tokio::spawn(async move {
        loop {
            tokio::select! {
                packet = uplink_rx.recv() => match packet {
                    Some(p) => concentrator.inject(&p).await,
                    None => break,
                },
                down = heard.recv() => match down {
                    Ok(d) => { let _ = relay_down.send(C::bytes(d)); }
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
    let summary = run_fleet(options, air, stop).await;
    relay.abort();
    summary
}

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
    let heard = device.subscribe_transmissions();
    Ok(fleet_behind(device, heard, options, stop).await)
}

/// Runs a fleet behind an emulated Semtech packet forwarder that talks GWMP
/// to `server` over real UDP. Returns when the fleet is done (`messages`
/// mode) or `stop` is cancelled, with what the fleet did until then.
pub async fn fleet_over_gwmp(
    server: SocketAddr,
    options: FleetOptions,
    stop: CancellationToken,
) -> std::io::Result<FleetSummary> {
    let eui = Eui(options.seed.to_be_bytes());
    let forwarder = PacketForwarder::start(PacketForwarderConfig::new(server, eui)).await?;
    let heard = forwarder.subscribe_downlinks();
    Ok(fleet_behind(forwarder, heard, options, stop).await)
}
