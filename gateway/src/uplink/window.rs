//! Which outbox message each MQTT packet id stands for, on one connection.
//!
//! rumqttc assigns packet ids itself and tells us only through events:
//! `Outgoing::Publish(pkid)` when it writes a publish, `Incoming::PubAck(pkid)`
//! when the broker acknowledges it. The publisher task is the only sender of
//! publishes on a connection and rumqttc takes requests from its channel in
//! order, so the n-th `Outgoing::Publish` is the n-th publish we requested.
//! (rumqttc also emits `Outgoing::Publish` when a packet-id collision resolves;
//! that is still the oldest request, because rumqttc takes no new request
//! while it holds a collided one.) Packet ids are reused once acknowledged;
//! the map below always holds the current owner.
//!
//! A connection's window dies with the connection: the uplink never lets
//! rumqttc replay publishes on a new connection (a new `EventLoop` per
//! connection), but re-sends the unacknowledged outbox messages itself, in
//! `seq` order, from the lowest one. That keeps per-device order, keeps this
//! map trivially right, and for QoS 1 the broker treats a re-send with a new
//! packet id exactly like a DUP re-transmission: it forwards it again.

use std::collections::{BTreeSet, HashMap, VecDeque};

/// What a publish was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tag {
    /// An outbox message, by store sequence number.
    Outbox(u64),
    /// The retained state message.
    State,
    /// A one-off publish (heartbeat, receipt, OTA progress) by request id.
    Extra(u64),
}

/// Something that should not happen with rumqttc as read; logged and
/// counted, recovered from by re-sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// `Outgoing::Publish` with no request waiting for a packet id.
    UnexpectedOutgoing(u16),
    /// A packet id was reused before its PUBACK; the previous owner will be
    /// re-sent.
    PacketIdReused { pkid: u16, previous: Tag },
    /// A QoS 0 publish where we only send QoS 1.
    QoS0(Tag),
}

#[derive(Debug)]
pub struct Window {
    max_outbox: usize,
    /// Requests handed to rumqttc whose packet id we have not seen yet.
    requested: VecDeque<Tag>,
    /// Written to the network, waiting for PUBACK.
    inflight: HashMap<u16, Tag>,
    /// Outbox messages in `requested` or `inflight`.
    outbox_outstanding: usize,
    /// Highest seq handed to rumqttc on this connection (fetch after it).
    cursor: u64,
    /// Seqs sent on an earlier connection without a PUBACK: sending them
    /// again is a re-publish.
    resend: BTreeSet<u64>,
}

impl Window {
    pub fn new(max_outbox: usize) -> Window {
        Window {
            max_outbox: max_outbox.max(1),
            requested: VecDeque::new(),
            inflight: HashMap::new(),
            outbox_outstanding: 0,
            cursor: 0,
            resend: BTreeSet::new(),
        }
    }

    /// How many more outbox messages may be sent now.
    pub fn room(&self) -> usize {
        self.max_outbox.saturating_sub(self.outbox_outstanding)
    }

    /// Outbox messages sent and not yet acknowledged.
    pub fn outbox_outstanding(&self) -> usize {
        self.outbox_outstanding
    }

    /// Nothing of any kind is waiting for a PUBACK.
    pub fn is_idle(&self) -> bool {
        self.requested.is_empty() && self.inflight.is_empty()
    }

    /// Fetch outbox entries after this seq.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// A publish for `tag` was accepted by rumqttc's request channel.
    /// Returns true when this is a re-send of an outbox message.
    pub fn requested(&mut self, tag: Tag) -> bool {
        self.requested.push_back(tag);
        match tag {
            Tag::Outbox(seq) => {
                self.outbox_outstanding += 1;
                self.cursor = self.cursor.max(seq);
                self.resend.remove(&seq)
            }
            _ => false,
        }
    }

    /// A fetch returned `seqs` (ascending; with `exhausted`, everything there
    /// was after the fetch point). Resend marks for seqs up to the last one
    /// that did not come back were published or compacted meanwhile and are
    /// dropped; marks for returned seqs stay until they are sent.
    pub fn fetched(&mut self, seqs: &[u64], exhausted: bool) {
        let last = seqs.last().copied();
        self.resend.retain(|seq| {
            seqs.binary_search(seq).is_ok() || (!exhausted && last.is_none_or(|last| *seq > last))
        });
    }

    /// rumqttc wrote a publish with this packet id.
    pub fn on_outgoing_publish(&mut self, pkid: u16) -> Result<(), Anomaly> {
        let Some(tag) = self.requested.pop_front() else {
            return Err(Anomaly::UnexpectedOutgoing(pkid));
        };
        if pkid == 0 {
            self.give_back(tag);
            return Err(Anomaly::QoS0(tag));
        }
        match self.inflight.insert(pkid, tag) {
            None => Ok(()),
            Some(previous) => {
                self.give_back(previous);
                Err(Anomaly::PacketIdReused { pkid, previous })
            }
        }
    }

    /// The broker acknowledged this packet id; returns whose it was.
    pub fn on_puback(&mut self, pkid: u16) -> Option<Tag> {
        let tag = self.inflight.remove(&pkid)?;
        if matches!(tag, Tag::Outbox(_)) {
            self.outbox_outstanding -= 1;
        }
        Some(tag)
    }

    /// The connection is gone: every unacknowledged outbox message will be
    /// fetched and sent again from the lowest seq. Returns the non-outbox tags
    /// that were outstanding (their requesters learn they failed).
    pub fn connection_lost(&mut self) -> Vec<Tag> {
        let tags: Vec<Tag> = self
            .requested
            .drain(..)
            .chain(self.inflight.drain().map(|(_, tag)| tag))
            .collect();
        let mut others = Vec::new();
        for tag in tags {
            match tag {
                Tag::Outbox(seq) => self.rewind_to(seq),
                other => others.push(other),
            }
        }
        self.outbox_outstanding = 0;
        others
    }

    /// A tag lost its packet: if it is an outbox message, fetch it again.
    fn give_back(&mut self, tag: Tag) {
        if let Tag::Outbox(seq) = tag {
            self.outbox_outstanding -= 1;
            self.rewind_to(seq);
        }
    }

    fn rewind_to(&mut self, seq: u64) {
        self.resend.insert(seq);
        self.cursor = self.cursor.min(seq.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_packet_ids_in_request_order() {
        let mut w = Window::new(4);
        assert!(!w.requested(Tag::Outbox(10)));
        w.requested(Tag::State);
        w.requested(Tag::Outbox(11));
        assert_eq!(w.room(), 2);
        assert_eq!(w.cursor(), 11);
        w.on_outgoing_publish(1).unwrap();
        w.on_outgoing_publish(2).unwrap();
        w.on_outgoing_publish(3).unwrap();
        assert_eq!(w.on_puback(3), Some(Tag::Outbox(11)));
        assert_eq!(w.on_puback(1), Some(Tag::Outbox(10)));
        assert_eq!(w.on_puback(1), None, "acked twice");
        assert_eq!(w.on_puback(2), Some(Tag::State));
        assert!(w.is_idle());
        assert_eq!(w.room(), 4);
    }

    #[test]
    fn packet_ids_are_reused_after_their_ack() {
        let mut w = Window::new(2);
        w.requested(Tag::Outbox(1));
        w.on_outgoing_publish(1).unwrap();
        assert_eq!(w.on_puback(1), Some(Tag::Outbox(1)));
        w.requested(Tag::Outbox(2));
        w.on_outgoing_publish(1).unwrap();
        assert_eq!(w.on_puback(1), Some(Tag::Outbox(2)));
    }

    #[test]
    fn lost_connection_rewinds_to_the_lowest_unacked_and_counts_resends() {
        let mut w = Window::new(8);
        for seq in 5..=9 {
            w.requested(Tag::Outbox(seq));
        }
        w.requested(Tag::Extra(1));
        for pkid in 1..=3 {
            w.on_outgoing_publish(pkid).unwrap();
        }
        // 5 and 7 acked; 6 in flight; 8, 9 and the extra still requested.
        assert_eq!(w.on_puback(1), Some(Tag::Outbox(5)));
        assert_eq!(w.on_puback(3), Some(Tag::Outbox(7)));
        assert_eq!(w.connection_lost(), vec![Tag::Extra(1)]);
        assert!(w.is_idle());
        assert_eq!(
            w.cursor(),
            5,
            "fetch again after 5: 6 is the lowest unacked"
        );
        assert_eq!(w.room(), 8);
        // The store returns 6, 8, 9 (7 is marked): all three are re-sends.
        assert!(w.requested(Tag::Outbox(6)));
        assert!(w.requested(Tag::Outbox(8)));
        assert!(w.requested(Tag::Outbox(9)));
        assert!(!w.requested(Tag::Outbox(10)));
    }

    #[test]
    fn resend_marks_for_rows_that_vanished_are_dropped() {
        let mut w = Window::new(8);
        w.requested(Tag::Outbox(3));
        w.requested(Tag::Outbox(4));
        w.requested(Tag::Outbox(5));
        w.connection_lost();
        // Row 3 was compacted away meanwhile: the fetch returns 4 and 5 only.
        w.fetched(&[4, 5], false);
        assert!(
            w.requested(Tag::Outbox(4)),
            "4 is still a resend until sent"
        );
        assert!(
            !w.requested(Tag::Outbox(3)),
            "3 no longer counts as a resend"
        );
        assert!(w.requested(Tag::Outbox(5)));
        // A fetch that found nothing: every remaining mark is stale.
        w.connection_lost();
        w.fetched(&[], true);
        assert!(!w.requested(Tag::Outbox(4)));
    }

    #[test]
    fn anomalies_give_the_message_back() {
        let mut w = Window::new(4);
        assert_eq!(
            w.on_outgoing_publish(1),
            Err(Anomaly::UnexpectedOutgoing(1))
        );
        w.requested(Tag::Outbox(1));
        w.requested(Tag::Outbox(2));
        w.on_outgoing_publish(1).unwrap();
        assert_eq!(
            w.on_outgoing_publish(1),
            Err(Anomaly::PacketIdReused {
                pkid: 1,
                previous: Tag::Outbox(1)
            })
        );
        assert_eq!(w.cursor(), 0, "seq 1 will be fetched again");
        assert_eq!(w.outbox_outstanding(), 1);
        assert_eq!(w.on_puback(1), Some(Tag::Outbox(2)));
    }
}
