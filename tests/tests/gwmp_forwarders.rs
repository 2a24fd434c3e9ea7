//! Several packet forwarders on one GWMP link: a gateway whose radio link
//! is fed by two concentrators (two masts, say) must answer a device
//! through the one that heard it, not through whichever spoke last.

use std::time::Duration;

use radio_bridge::frame::{Frame, Message};
use radio_bridge::gwmp::Eui;
use radio_bridge::identity::Identity;
use radio_bridge::simulator::packet_forwarder::{PacketForwarder, PacketForwarderConfig};
use seed_e2e::frames::transaction;
use seed_e2e::in_process::InProcessGateway;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_goes_back_through_the_forwarder_that_heard_the_device() {
    let gateway = InProcessGateway::start(&["gwmp0"], None).await;
    let gwmp = gateway.gwmp[0];
    let near = PacketForwarder::start(PacketForwarderConfig::new(gwmp, Eui([0xA; 8])))
        .await
        .unwrap();
    let far = PacketForwarder::start(PacketForwarderConfig::new(gwmp, Eui([0xB; 8])))
        .await
        .unwrap();
    let mut near_downlinks = near.subscribe_downlinks();
    let mut far_downlinks = far.subscribe_downlinks();
    // The far forwarder's keep-alive is the latest the gateway has seen:
    // before, every downlink went to it.
    far.pull_data().await.unwrap();
    far.wait_until(|stats| stats.pull_acks >= 2).await;

    let device = Identity::from_seed([21; 32]);
    let frame = transaction(&device, 1);
    let msg_id = Frame::decode(&frame).unwrap().msg_id;
    near.inject(&frame, -80.0, 8.0).await.unwrap();

    // Both forwarders also carry what is for everyone (the gateway's own
    // heartbeat); the ack is for one device.
    let ack = tokio::time::timeout(WAIT, async {
        loop {
            let sent = near_downlinks.recv().await.expect("downlinks channel open");
            let frame = Frame::decode(&sent.bytes).expect("a signed frame");
            if let Message::Ack(ack) = frame.envelope.message {
                return ack;
            }
        }
    })
    .await
    .expect("the forwarder that heard the device got the ack");
    assert_eq!(ack.acked, vec![msg_id]);
    // The far one got no ack.
    while let Ok(sent) = far_downlinks.try_recv() {
        let frame = Frame::decode(&sent.bytes).expect("a signed frame");
        assert!(
            !matches!(frame.envelope.message, Message::Ack(_)),
            "an ack went through the forwarder that did not hear the device: {:?}",
            frame.envelope.message
        );
    }
    gateway.stop().await;
}
