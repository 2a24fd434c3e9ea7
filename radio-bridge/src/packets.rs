//! Decoding a finite run of radio packets away from the air: whole frames
//! and fragments in any order, reassembled, each frame decoded and
//! verified. What `seed-gateway decode` does with several packets and what
//! the fragment vectors of docs/protocol.md are checked with; the daemon's
//! receive path (with clocks, links and counters) is `gateway::ingest`.

use std::time::Instant;

use crate::fragment::{self, PendingSet, PushError, Reassembler};
use crate::frame::{Frame, FrameError};

/// Why a packet, or a set of fragments, yielded no frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Fragment(PushError),
    /// The input ended before every fragment of a set arrived.
    #[error(
        "incomplete fragment set {set_id:#06x} of sender {tag}: missing {missing:?} of {count} pieces",
        tag = hex::encode(.0.sender_tag), set_id = .0.set_id, missing = .0.missing, count = .0.count
    )]
    Incomplete(PendingSet),
}

impl PacketError {
    /// The receive outcome (docs/protocol.md §6, §7).
    pub fn outcome(&self) -> &'static str {
        match self {
            PacketError::Frame(e) => e.outcome(),
            PacketError::Fragment(PushError::OverMemoryBound) => "oversize",
            PacketError::Fragment(_) => "malformed",
            PacketError::Incomplete(_) => "incomplete",
        }
    }
}

/// Decodes `packets` in order. One result per whole frame, per completed
/// fragment set and per rejected packet, in the order they happened; then
/// one [`PacketError::Incomplete`] per set still missing pieces. A fragment
/// that only waits for others yields nothing.
pub fn decode_packets<'a>(
    packets: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Result<Frame, PacketError>> {
    let mut reassembler = Reassembler::default();
    // All packets count as heard at once: the input has no timing, so no
    // set times out.
    let now = Instant::now();
    let mut results = Vec::new();
    for packet in packets {
        if !fragment::is_fragment(packet) {
            results.push(Frame::decode(packet).map_err(PacketError::from));
            continue;
        }
        match reassembler.push(packet, now) {
            Ok(Some(frame)) => results.push(Frame::decode(&frame).map_err(PacketError::from)),
            Ok(None) => {}
            Err(e) => results.push(Err(PacketError::Fragment(e))),
        }
    }
    results.extend(
        reassembler
            .pending()
            .into_iter()
            .map(|set| Err(PacketError::Incomplete(set))),
    );
    results
}
