//! Turns the uplink's status into the events list's "Internet uplink
//! connected" and "lost" lines.
//!
//! The live feed looks at the status once a second, and a connection can
//! come and go between two looks (a broker stopped right after we
//! connected). Comparing only `connected` would then see "not connected"
//! twice and say nothing; the status's count of connections tells that one
//! happened, so its lines are still written, in order.

use crate::uplink::UplinkStatus;

/// An event for [`GatewayState::event`](crate::state::GatewayState::event).
pub(super) type UplinkEvent = (&'static str, &'static str, String);

/// What the last look saw.
#[derive(Debug, Default)]
pub(super) struct UplinkEvents {
    connected: Option<bool>,
    connects_total: u64,
}

impl UplinkEvents {
    /// The events since the last look, oldest first.
    pub fn notice(&mut self, status: &UplinkStatus) -> Vec<UplinkEvent> {
        let was_up = self.connected == Some(true);
        let new_connections = status.connects_total != self.connects_total;
        // A clean stop (SIGTERM, a reboot into an update) closes the
        // connection on purpose: its log says "uplink stopped", and it is no
        // failure to report.
        let lost = |events: &mut Vec<UplinkEvent>| {
            if !status.stopped {
                let why = status
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "connection lost".into());
                events.push((
                    "broker_down",
                    "warn",
                    format!("Internet uplink lost: {why}; messages are kept here"),
                ));
            }
        };
        let mut events = Vec::new();
        if was_up && (new_connections || !status.connected) {
            lost(&mut events);
        }
        if new_connections {
            events.push((
                "broker_up",
                "info",
                format!("Internet uplink connected to {}", status.broker),
            ));
            if !status.connected {
                lost(&mut events);
            }
        }
        self.connected = Some(status.connected);
        self.connects_total = status.connects_total;
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(connected: bool, connects_total: u64) -> UplinkStatus {
        UplinkStatus {
            connected,
            connects_total,
            broker: "mqtt://broker:1883".into(),
            last_error: (!connected).then(|| "connection refused".into()),
            ..UplinkStatus::default()
        }
    }

    fn kinds(events: Vec<UplinkEvent>) -> Vec<&'static str> {
        events.into_iter().map(|(kind, _, _)| kind).collect()
    }

    #[test]
    fn a_connection_seen_up_then_down() {
        let mut watch = UplinkEvents::default();
        assert!(
            watch.notice(&status(false, 0)).is_empty(),
            "never connected"
        );
        assert_eq!(kinds(watch.notice(&status(true, 1))), ["broker_up"]);
        assert!(watch.notice(&status(true, 1)).is_empty());
        let lost = watch.notice(&status(false, 1));
        assert_eq!(kinds(lost.clone()), ["broker_down"]);
        assert!(lost[0].2.contains("connection refused"), "{lost:?}");
    }

    #[test]
    fn a_connection_that_came_and_went_between_two_looks_still_gets_both_lines() {
        let mut watch = UplinkEvents::default();
        assert!(watch.notice(&status(false, 0)).is_empty());
        assert_eq!(
            kinds(watch.notice(&status(false, 1))),
            ["broker_up", "broker_down"]
        );
        // Up, then lost and back between two looks.
        assert_eq!(kinds(watch.notice(&status(true, 2))), ["broker_up"]);
        assert_eq!(
            kinds(watch.notice(&status(true, 3))),
            ["broker_down", "broker_up"]
        );
    }

    #[test]
    fn a_clean_stop_is_not_reported_as_lost() {
        let mut watch = UplinkEvents::default();
        watch.notice(&status(true, 1));
        let stopped = UplinkStatus {
            stopped: true,
            ..status(false, 1)
        };
        assert!(watch.notice(&stopped).is_empty());
    }
}
