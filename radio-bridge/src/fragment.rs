//! Splitting Seed frames larger than the radio MTU into fragments, and
//! putting them back together within fixed memory bounds.
//!
//! # Wire format (normative)
//!
//! A fragment packet is a 13-byte header followed by a slice of the frame:
//!
//! | offset | size | field      | meaning |
//! |-------:|-----:|------------|---------|
//! | 0      | 1    | marker     | always `0xFA` ([`MARKER`]). A whole Seed frame starts with `0x85` (a CBOR array of 5), so the first byte alone tells a fragment from a frame. |
//! | 1      | 8    | sender tag | the first 8 bytes of the sender's 32-byte device id ([`sender_tag`]). |
//! | 9      | 2    | set id     | big-endian `u16` chosen by the sender, the same for every fragment of one frame and different for frames sent within the reassembly timeout of each other (a counter starting at a random value is enough). |
//! | 11     | 1    | index      | 0-based position of this fragment in its set; `index < count`. |
//! | 12     | 1    | count      | number of fragments in the set, `1..=255`; the same in every fragment of the set. |
//! | 13     | rest | payload    | bytes `[index·k, index·k + len)` of the frame, where `k` is the payload size of every fragment but the last. |
//!
//! A set is identified by (sender tag, set id). The frame is the
//! concatenation of the payloads of indices `0..count` in order. Senders make
//! every fragment but the last exactly `mtu − 13` bytes long ([`fragment`]);
//! the receiver does not rely on that and simply concatenates. The sender
//! tag is not authenticated: the reassembled frame's own signature is what
//! proves its origin, so the tag only keeps sets of different devices apart
//! and lets memory bounds be applied per sender.
//!
//! Receiver rules:
//! - A packet shorter than 13 bytes, with count 0 or with index ≥ count is
//!   malformed; if its header is complete, the set it names is dropped.
//! - A fragment whose count differs from the count its set started with, or
//!   that repeats an index with different payload bytes, is malformed and
//!   its set is dropped (no frame is built from contradictory pieces).
//! - A fragment repeating an index with identical bytes is a duplicate (a
//!   mesh relay or retransmission) and is ignored.
//! - A set with count 1 completes at once and is never buffered.
//! - A set not complete within the timeout (default 60 s from its first
//!   fragment) is dropped. A fragment of a set that was already completed or
//!   dropped starts a new set; de-duplicating whole frames is the job of the
//!   layer above (by message id).
//!
//! # Reassembly bounds
//!
//! Anyone in radio range can send fragments that never complete, so the
//! [`Reassembler`] never holds more than its [`ReassemblerConfig`] allows:
//! sets expire after a timeout; each sender tag has a byte budget and a limit
//! on concurrent sets, and going over drops that sender's oldest set; a total
//! byte budget protects against many forged sender tags, and going over it
//! drops the oldest set of whichever sender holds the most. A single sender
//! flooding incomplete sets therefore only ever evicts its own sets. Every
//! dropped set and every bad fragment is counted ([`ReassemblyCounters`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// First byte of every fragment packet.
pub const MARKER: u8 = 0xFA;

/// Bytes before the payload: marker, sender tag, set id, index, count.
pub const HEADER_LEN: usize = 13;

/// The most fragments one frame may be split into (the count is one byte).
pub const MAX_FRAGMENTS: usize = 255;

/// What a buffered fragment costs against the memory bounds on top of its
/// payload: the map entry and allocation bookkeeping. Without it, empty
/// fragments would be free and could pile up without limit.
pub const PER_FRAGMENT_OVERHEAD: usize = 32;

/// The sender tag of a device: the first 8 bytes of its 32-byte device id.
pub fn sender_tag(device_id: &[u8; 32]) -> [u8; 8] {
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&device_id[..8]);
    tag
}

/// Whether `packet` is meant to be a fragment (starts with [`MARKER`]).
/// It may still be malformed; [`Reassembler::push`] finds out.
pub fn is_fragment(packet: &[u8]) -> bool {
    packet.first() == Some(&MARKER)
}

/// Why a frame cannot be fragmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    #[error("an empty frame has nothing to send")]
    EmptyFrame,
    #[error("MTU {mtu} leaves no room for payload after the {HEADER_LEN}-byte fragment header")]
    MtuTooSmall { mtu: usize },
    #[error("frame needs {needed} fragments at this MTU, at most {MAX_FRAGMENTS} are possible")]
    TooManyFragments { needed: usize },
}

/// Splits `frame` into fragment packets of at most `mtu` bytes each, in
/// index order. Always fragments, even a frame that would fit whole (then
/// into one fragment); see [`packets_for`] for the usual choice.
pub fn fragment(
    frame: &[u8],
    sender_tag: [u8; 8],
    set_id: u16,
    mtu: usize,
) -> Result<Vec<Vec<u8>>, FragmentError> {
    if frame.is_empty() {
        return Err(FragmentError::EmptyFrame);
    }
    let chunk = mtu
        .checked_sub(HEADER_LEN)
        .filter(|&chunk| chunk > 0)
        .ok_or(FragmentError::MtuTooSmall { mtu })?;
    let needed = frame.len().div_ceil(chunk);
    let count = u8::try_from(needed).map_err(|_| FragmentError::TooManyFragments { needed })?;
    Ok(frame
        .chunks(chunk)
        .zip(0u8..)
        .map(|(payload, index)| {
            let mut packet = Vec::with_capacity(HEADER_LEN + payload.len());
            packet.push(MARKER);
            packet.extend_from_slice(&sender_tag);
            packet.extend_from_slice(&set_id.to_be_bytes());
            packet.push(index);
            packet.push(count);
            packet.extend_from_slice(payload);
            packet
        })
        .collect())
}

/// The packets to put on air for `frame`: the frame itself when it fits in
/// `mtu`, its fragments otherwise.
pub fn packets_for(
    frame: &[u8],
    sender_tag: [u8; 8],
    set_id: u16,
    mtu: usize,
) -> Result<Vec<Vec<u8>>, FragmentError> {
    if !frame.is_empty() && frame.len() <= mtu {
        Ok(vec![frame.to_vec()])
    } else {
        fragment(frame, sender_tag, set_id, mtu)
    }
}

/// The decoded header of a fragment packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentHeader {
    pub sender_tag: [u8; 8],
    pub set_id: u16,
    pub index: u8,
    pub count: u8,
}

/// Splits a fragment packet into header and payload, checking the header's
/// own consistency (not its consistency with other fragments).
pub fn parse(packet: &[u8]) -> Result<(FragmentHeader, &[u8]), Malformed> {
    if !is_fragment(packet) {
        return Err(Malformed::NotAFragment);
    }
    if packet.len() < HEADER_LEN {
        return Err(Malformed::Truncated { len: packet.len() });
    }
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&packet[1..9]);
    let header = FragmentHeader {
        sender_tag: tag,
        set_id: u16::from_be_bytes([packet[9], packet[10]]),
        index: packet[11],
        count: packet[12],
    };
    if header.count == 0 {
        return Err(Malformed::ZeroCount);
    }
    if header.index >= header.count {
        return Err(Malformed::IndexOutOfRange {
            index: header.index,
            count: header.count,
        });
    }
    Ok((header, &packet[HEADER_LEN..]))
}

/// How a fragment was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("first byte is not the fragment marker 0xFA")]
    NotAFragment,
    #[error("{len} bytes is shorter than the {HEADER_LEN}-byte fragment header")]
    Truncated { len: usize },
    #[error("fragment count is 0")]
    ZeroCount,
    #[error("index {index} is not below the count {count}")]
    IndexOutOfRange { index: u8, count: u8 },
    #[error("count {now} differs from the set's count {was}")]
    CountChanged { was: u8, now: u8 },
    #[error("a different fragment with index {index} was already received")]
    ConflictingDuplicate { index: u8 },
}

/// Why [`Reassembler::push`] did not take a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The packet does not start with [`MARKER`]; it is the caller's to
    /// route elsewhere (not counted here).
    #[error("not a fragment")]
    NotAFragment,
    /// Counted in `malformed`; any set it contradicted was dropped.
    #[error("malformed fragment: {0}")]
    Malformed(Malformed),
    /// The fragment's set cannot be held within the memory bounds even after
    /// evicting everything else allowed; the set was dropped and counted in
    /// `evicted_for_memory`.
    #[error("fragment set dropped: it does not fit the reassembly memory bounds")]
    OverMemoryBound,
}

/// Limits of a [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassemblerConfig {
    /// A set not complete this long after its first fragment is dropped.
    pub timeout: Duration,
    /// Bytes one sender tag may have buffered (payload plus
    /// [`PER_FRAGMENT_OVERHEAD`] per fragment).
    pub max_bytes_per_sender: usize,
    /// Bytes buffered across all senders.
    pub max_bytes_total: usize,
    /// Incomplete sets one sender tag may have at once.
    pub max_sets_per_sender: usize,
}

impl Default for ReassemblerConfig {
    /// 60 s, 16 KiB per sender, 256 KiB in total, 4 sets per sender: a
    /// 16 KiB frame takes ~70 fragments, minutes of airtime at SF9, so
    /// nothing legitimate comes close while a flood stays harmless.
    fn default() -> Self {
        ReassemblerConfig {
            timeout: Duration::from_secs(60),
            max_bytes_per_sender: 16 * 1024,
            max_bytes_total: 256 * 1024,
            max_sets_per_sender: 4,
        }
    }
}

/// What the reassembler has done; read by the status page and `/metrics`.
/// Atomics so readers never contend with the task that owns the reassembler.
#[derive(Debug, Default)]
pub struct ReassemblyCounters {
    /// Frames put back together.
    pub completed: AtomicU64,
    /// Sets dropped because they did not complete within the timeout.
    pub timed_out: AtomicU64,
    /// Sets dropped to stay within a memory or set-count bound.
    pub evicted_for_memory: AtomicU64,
    /// Fragments that were malformed or contradicted their set.
    pub malformed: AtomicU64,
    /// Fragments received again with identical bytes (ignored).
    pub duplicates: AtomicU64,
}

impl ReassemblyCounters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A plain copy for serialisation.
    pub fn snapshot(&self) -> ReassemblyCountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ReassemblyCountersSnapshot {
            completed: get(&self.completed),
            timed_out: get(&self.timed_out),
            evicted_for_memory: get(&self.evicted_for_memory),
            malformed: get(&self.malformed),
            duplicates: get(&self.duplicates),
        }
    }
}

/// Serialisable copy of [`ReassemblyCounters`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassemblyCountersSnapshot {
    pub completed: u64,
    pub timed_out: u64,
    pub evicted_for_memory: u64,
    pub malformed: u64,
    pub duplicates: u64,
}

/// An incomplete set as [`Reassembler::pending`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSet {
    pub sender_tag: [u8; 8],
    pub set_id: u16,
    pub count: u8,
    /// Indices not received yet, ascending.
    pub missing: Vec<u8>,
}

/// One incomplete set.
#[derive(Debug)]
struct PartialSet {
    count: u8,
    started: Instant,
    /// Creation order, so "oldest" is well defined even for equal instants.
    seq: u64,
    fragments: BTreeMap<u8, Vec<u8>>,
    /// Charged bytes, see [`cost`].
    bytes: usize,
}

/// One sender tag's incomplete sets.
#[derive(Debug, Default)]
struct SenderSets {
    sets: HashMap<u16, PartialSet>,
    bytes: usize,
}

type SetKey = ([u8; 8], u16);

fn cost(payload: &[u8]) -> usize {
    payload.len() + PER_FRAGMENT_OVERHEAD
}

/// Puts fragment sets back together. Owned by one task; takes `now` on every
/// call instead of reading the clock, so tests control time.
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblerConfig,
    senders: HashMap<[u8; 8], SenderSets>,
    /// Invariant: the sum of every sender's `bytes`, which is the sum of its
    /// sets' `bytes`.
    total_bytes: usize,
    next_seq: u64,
    /// When the oldest set times out; lets `push` skip the expiry scan.
    next_deadline: Option<Instant>,
    counters: Arc<ReassemblyCounters>,
}

impl Default for Reassembler {
    fn default() -> Self {
        Reassembler::new(ReassemblerConfig::default())
    }
}

impl Reassembler {
    pub fn new(config: ReassemblerConfig) -> Self {
        Reassembler {
            config,
            senders: HashMap::new(),
            total_bytes: 0,
            next_seq: 0,
            next_deadline: None,
            counters: Arc::default(),
        }
    }

    pub fn config(&self) -> &ReassemblerConfig {
        &self.config
    }

    /// The counters, shared with whoever reports them.
    pub fn counters(&self) -> Arc<ReassemblyCounters> {
        Arc::clone(&self.counters)
    }

    /// Bytes currently charged against the total bound.
    pub fn buffered_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Incomplete sets currently held.
    pub fn pending_sets(&self) -> usize {
        self.senders.values().map(|s| s.sets.len()).sum()
    }

    /// The incomplete sets, oldest first: what is still missing when the
    /// input ends (the command line reports it).
    pub fn pending(&self) -> Vec<PendingSet> {
        let mut sets: Vec<(u64, PendingSet)> = self
            .senders
            .iter()
            .flat_map(|(tag, sender)| {
                sender.sets.iter().map(|(id, set)| {
                    let pending = PendingSet {
                        sender_tag: *tag,
                        set_id: *id,
                        count: set.count,
                        missing: (0..set.count)
                            .filter(|i| !set.fragments.contains_key(i))
                            .collect(),
                    };
                    (set.seq, pending)
                })
            })
            .collect();
        sets.sort_by_key(|(seq, _)| *seq);
        sets.into_iter().map(|(_, set)| set).collect()
    }

    /// Takes one received packet. Returns the whole frame when this fragment
    /// completed its set, `None` when more fragments are needed (or it was an
    /// identical duplicate, which is counted and ignored).
    pub fn push(&mut self, packet: &[u8], now: Instant) -> Result<Option<Vec<u8>>, PushError> {
        self.expire_if_due(now);
        let (header, payload) = match parse(packet) {
            Ok(parsed) => parsed,
            Err(Malformed::NotAFragment) => return Err(PushError::NotAFragment),
            Err(reason) => {
                // A complete header with an impossible index or count still
                // names a set, and contradicts it: that set is dropped too.
                if let Some(key) = key_of_header_bytes(packet) {
                    self.remove_set(key);
                }
                return Err(self.malformed(reason));
            }
        };
        let key = (header.sender_tag, header.set_id);

        if let Some(set) = self.get_set(key) {
            if set.count != header.count {
                let reason = Malformed::CountChanged {
                    was: set.count,
                    now: header.count,
                };
                self.remove_set(key);
                return Err(self.malformed(reason));
            }
            if let Some(existing) = set.fragments.get(&header.index) {
                if existing.as_slice() == payload {
                    ReassemblyCounters::bump(&self.counters.duplicates);
                    return Ok(None);
                }
                self.remove_set(key);
                return Err(self.malformed(Malformed::ConflictingDuplicate {
                    index: header.index,
                }));
            }
        } else {
            if header.count == 1 {
                ReassemblyCounters::bump(&self.counters.completed);
                return Ok(Some(payload.to_vec()));
            }
            self.start_set(key, header.count, now);
        }

        let charge = cost(payload);
        if !self.make_room(key, charge) {
            self.remove_set(key);
            ReassemblyCounters::bump(&self.counters.evicted_for_memory);
            return Err(PushError::OverMemoryBound);
        }
        let Some(sender) = self.senders.get_mut(&key.0) else {
            return Ok(None); // unreachable: start_set or get_set saw it
        };
        let Some(set) = sender.sets.get_mut(&key.1) else {
            return Ok(None); // unreachable: make_room never evicts `key`
        };
        set.fragments.insert(header.index, payload.to_vec());
        set.bytes += charge;
        sender.bytes += charge;
        self.total_bytes += charge;

        if set.fragments.len() < usize::from(set.count) {
            return Ok(None);
        }
        let Some(set) = self.remove_set(key) else {
            return Ok(None);
        };
        ReassemblyCounters::bump(&self.counters.completed);
        Ok(Some(set.fragments.into_values().flatten().collect()))
    }

    /// Drops every set that has not completed within the timeout, counting
    /// each in `timed_out`. [`push`](Self::push) does this too; call it on a
    /// timer so stale sets are released even when the air is quiet.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.config.timeout;
        let is_stale =
            |set: &PartialSet| set.started.checked_add(timeout).is_some_and(|t| t <= now);
        let stale: Vec<SetKey> = self
            .senders
            .iter()
            .flat_map(|(tag, sender)| {
                sender
                    .sets
                    .iter()
                    .filter(|(_, set)| is_stale(set))
                    .map(|(id, _)| (*tag, *id))
            })
            .collect();
        for key in stale {
            self.remove_set(key);
            ReassemblyCounters::bump(&self.counters.timed_out);
        }
        self.next_deadline = self
            .senders
            .values()
            .flat_map(|sender| sender.sets.values())
            .filter_map(|set| set.started.checked_add(timeout))
            .min();
    }

    fn expire_if_due(&mut self, now: Instant) {
        if self.next_deadline.is_some_and(|deadline| deadline <= now) {
            self.expire(now);
        }
    }

    fn malformed(&self, reason: Malformed) -> PushError {
        ReassemblyCounters::bump(&self.counters.malformed);
        PushError::Malformed(reason)
    }

    fn get_set(&self, key: SetKey) -> Option<&PartialSet> {
        self.senders.get(&key.0)?.sets.get(&key.1)
    }

    /// Opens an empty set, first evicting the sender's oldest set if it
    /// already has as many as allowed.
    fn start_set(&mut self, key: SetKey, count: u8, now: Instant) {
        let open = self.senders.get(&key.0).map_or(0, |s| s.sets.len());
        if open >= self.config.max_sets_per_sender.max(1) {
            if let Some(victim) = self.oldest_set_of(key.0, None) {
                self.remove_set(victim);
                ReassemblyCounters::bump(&self.counters.evicted_for_memory);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.senders.entry(key.0).or_default().sets.insert(
            key.1,
            PartialSet {
                count,
                started: now,
                seq,
                fragments: BTreeMap::new(),
                bytes: 0,
            },
        );
        if let Some(deadline) = now.checked_add(self.config.timeout) {
            self.next_deadline = Some(self.next_deadline.map_or(deadline, |d| d.min(deadline)));
        }
    }

    /// Evicts other sets until `charge` more bytes for set `key` fit both
    /// bounds. False if they cannot fit without evicting `key` itself.
    fn make_room(&mut self, key: SetKey, charge: usize) -> bool {
        let sender_bytes = |me: &Self| me.senders.get(&key.0).map_or(0, |s| s.bytes);
        while sender_bytes(self).saturating_add(charge) > self.config.max_bytes_per_sender {
            let Some(victim) = self.oldest_set_of(key.0, Some(key.1)) else {
                return false;
            };
            self.remove_set(victim);
            ReassemblyCounters::bump(&self.counters.evicted_for_memory);
        }
        while self.total_bytes.saturating_add(charge) > self.config.max_bytes_total {
            let Some(victim) = self.oldest_set_of_heaviest_sender(key) else {
                return false;
            };
            self.remove_set(victim);
            ReassemblyCounters::bump(&self.counters.evicted_for_memory);
        }
        true
    }

    fn oldest_set_of(&self, tag: [u8; 8], except: Option<u16>) -> Option<SetKey> {
        self.senders
            .get(&tag)?
            .sets
            .iter()
            .filter(|(id, _)| Some(**id) != except)
            .min_by_key(|(_, set)| set.seq)
            .map(|(id, _)| (tag, *id))
    }

    /// The victim for the total bound: among all sets but `keep`, the oldest
    /// set of the sender holding the most bytes.
    fn oldest_set_of_heaviest_sender(&self, keep: SetKey) -> Option<SetKey> {
        self.senders
            .iter()
            .flat_map(|(tag, sender)| {
                sender
                    .sets
                    .iter()
                    .filter(move |(id, _)| (*tag, **id) != keep)
                    .map(move |(id, set)| (sender.bytes, set.seq, (*tag, *id)))
            })
            .min_by_key(|(sender_bytes, seq, _)| (std::cmp::Reverse(*sender_bytes), *seq))
            .map(|(_, _, key)| key)
    }

    /// Removes a set and releases its bytes; forgets a sender left with none.
    fn remove_set(&mut self, key: SetKey) -> Option<PartialSet> {
        let sender = self.senders.get_mut(&key.0)?;
        let set = sender.sets.remove(&key.1)?;
        sender.bytes -= set.bytes;
        self.total_bytes -= set.bytes;
        if sender.sets.is_empty() {
            self.senders.remove(&key.0);
        }
        Some(set)
    }
}

/// The set key of a packet whose header is complete but inconsistent.
fn key_of_header_bytes(packet: &[u8]) -> Option<SetKey> {
    let header = packet.get(..HEADER_LEN)?;
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&header[1..9]);
    Some((tag, u16::from_be_bytes([header[9], header[10]])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TAG_A: [u8; 8] = [0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7];
    const TAG_B: [u8; 8] = [0xB0; 8];

    fn frame_of(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    fn packet(tag: [u8; 8], set_id: u16, index: u8, count: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![MARKER];
        p.extend_from_slice(&tag);
        p.extend_from_slice(&set_id.to_be_bytes());
        p.extend_from_slice(&[index, count]);
        p.extend_from_slice(payload);
        p
    }

    fn check_invariants(r: &Reassembler) {
        let mut total = 0;
        for sender in r.senders.values() {
            assert!(!sender.sets.is_empty(), "empty sender entry kept");
            assert!(sender.sets.len() <= r.config.max_sets_per_sender);
            let sum: usize = sender.sets.values().map(|s| s.bytes).sum();
            assert_eq!(sender.bytes, sum);
            assert!(sender.bytes <= r.config.max_bytes_per_sender);
            for set in sender.sets.values() {
                let charged: usize = set.fragments.values().map(|p| cost(p)).sum();
                assert_eq!(set.bytes, charged);
                assert!(set.fragments.len() < usize::from(set.count));
            }
            total += sender.bytes;
        }
        assert_eq!(r.total_bytes, total);
        assert!(r.total_bytes <= r.config.max_bytes_total);
    }

    /// The normative layout, byte by byte: 10 bytes at MTU 17 (4 payload
    /// bytes per fragment) make 3 fragments.
    #[test]
    fn wire_format_is_exactly_as_documented() {
        let frame: Vec<u8> = (1..=10).collect();
        let packets = fragment(&frame, TAG_A, 0x1234, 17).unwrap();
        let header = |index: u8| {
            let mut h = vec![0xFA, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7];
            h.extend_from_slice(&[0x12, 0x34, index, 0x03]);
            h
        };
        assert_eq!(packets.len(), 3);
        assert_eq!(packets[0], [header(0), vec![1, 2, 3, 4]].concat());
        assert_eq!(packets[1], [header(1), vec![5, 6, 7, 8]].concat());
        assert_eq!(packets[2], [header(2), vec![9, 10]].concat());
        assert!(packets.iter().all(|p| p.len() <= 17 && is_fragment(p)));
        assert_eq!(
            parse(&packets[2]).unwrap(),
            (
                FragmentHeader {
                    sender_tag: TAG_A,
                    set_id: 0x1234,
                    index: 2,
                    count: 3
                },
                &[9u8, 10][..]
            )
        );
    }

    #[test]
    fn sender_tag_is_the_device_id_prefix() {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&TAG_A);
        id[8] = 0xFF;
        assert_eq!(sender_tag(&id), TAG_A);
    }

    #[test]
    fn a_seed_frame_is_not_a_fragment() {
        assert!(!is_fragment(&[0x85, 0x01]));
        assert!(!is_fragment(&[]));
        assert!(is_fragment(&[0xFA]));
        let mut r = Reassembler::default();
        assert_eq!(
            r.push(&[0x85, 1, 2, 3], Instant::now()),
            Err(PushError::NotAFragment)
        );
        assert_eq!(
            r.counters().snapshot(),
            ReassemblyCountersSnapshot::default()
        );
    }

    #[test]
    fn fragmenting_refuses_what_it_cannot_express() {
        assert_eq!(fragment(&[], TAG_A, 1, 100), Err(FragmentError::EmptyFrame));
        assert_eq!(
            fragment(&[1], TAG_A, 1, HEADER_LEN),
            Err(FragmentError::MtuTooSmall { mtu: HEADER_LEN })
        );
        assert_eq!(
            fragment(&[1], TAG_A, 1, 0),
            Err(FragmentError::MtuTooSmall { mtu: 0 })
        );
        // 255 fragments of 2 bytes is the most an MTU of 15 carries.
        assert_eq!(fragment(&frame_of(510), TAG_A, 1, 15).unwrap().len(), 255);
        assert_eq!(
            fragment(&frame_of(511), TAG_A, 1, 15),
            Err(FragmentError::TooManyFragments { needed: 256 })
        );
    }

    #[test]
    fn packets_for_sends_small_frames_whole() {
        let frame = frame_of(200);
        assert_eq!(
            packets_for(&frame, TAG_A, 1, 255).unwrap(),
            vec![frame.clone()]
        );
        let packets = packets_for(&frame, TAG_A, 1, 100).unwrap();
        assert_eq!(packets.len(), 3); // 87 + 87 + 26
        assert!(packets.iter().all(|p| is_fragment(p)));
    }

    #[test]
    fn a_single_fragment_set_completes_at_once() {
        let mut r = Reassembler::default();
        let p = fragment(&frame_of(20), TAG_A, 9, 255).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(r.push(&p[0], Instant::now()), Ok(Some(frame_of(20))));
        assert_eq!(r.counters().snapshot().completed, 1);
        assert_eq!(r.pending_sets(), 0);
    }

    #[test]
    fn interleaved_senders_and_duplicates() {
        let mut r = Reassembler::default();
        let now = Instant::now();
        let a = fragment(&frame_of(300), TAG_A, 1, 120).unwrap();
        let b = fragment(&frame_of(250), TAG_B, 1, 120).unwrap();
        assert_eq!((a.len(), b.len()), (3, 3));
        assert_eq!(r.push(&a[2], now), Ok(None));
        assert_eq!(r.push(&b[1], now), Ok(None));
        assert_eq!(r.push(&a[2], now), Ok(None)); // identical duplicate
        assert_eq!(r.push(&a[0], now), Ok(None));
        assert_eq!(r.push(&b[0], now), Ok(None));
        assert_eq!(r.push(&b[2], now), Ok(Some(frame_of(250))));
        assert_eq!(r.push(&a[1], now), Ok(Some(frame_of(300))));
        let counters = r.counters().snapshot();
        assert_eq!((counters.completed, counters.duplicates), (2, 1));
        assert_eq!((r.pending_sets(), r.buffered_bytes()), (0, 0));
    }

    #[test]
    fn an_incomplete_set_times_out() {
        let config = ReassemblerConfig {
            timeout: Duration::from_secs(60),
            ..ReassemblerConfig::default()
        };
        let mut r = Reassembler::new(config);
        let t0 = Instant::now();
        let p = fragment(&frame_of(300), TAG_A, 1, 120).unwrap();
        r.push(&p[0], t0).unwrap();
        r.push(&p[1], t0 + Duration::from_secs(30)).unwrap();
        r.expire(t0 + Duration::from_secs(59));
        assert_eq!(r.pending_sets(), 1);
        // Any later push notices the deadline passed.
        let other = fragment(&frame_of(300), TAG_B, 1, 120).unwrap();
        r.push(&other[0], t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(r.counters().snapshot().timed_out, 1);
        assert_eq!(r.pending_sets(), 1);
        // The last fragment of the expired set now starts a new set rather
        // than completing a frame from forgotten pieces.
        assert_eq!(r.push(&p[2], t0 + Duration::from_secs(61)), Ok(None));
        assert_eq!(r.pending_sets(), 2);
        r.expire(t0 + Duration::from_secs(121));
        assert_eq!(r.counters().snapshot().timed_out, 3);
        assert_eq!((r.pending_sets(), r.buffered_bytes()), (0, 0));
    }

    /// Sender A floods hundreds of sets that never complete. It never holds
    /// more than its byte or set bound, only its own sets are evicted, and
    /// sender B's set, started before the flood, still completes.
    #[test]
    fn a_flooding_sender_only_hurts_itself() {
        let config = ReassemblerConfig::default();
        let mut r = Reassembler::new(config);
        let now = Instant::now();
        let b = fragment(&frame_of(400), TAG_B, 7, 200).unwrap();
        r.push(&b[0], now).unwrap();
        for set_id in 0..500u16 {
            for index in 0..3 {
                let p = packet(TAG_A, set_id, index, 4, &[0x55; 230]);
                r.push(&p, now).unwrap();
                let a = &r.senders[&TAG_A];
                assert!(a.bytes <= config.max_bytes_per_sender);
                assert!(a.sets.len() <= config.max_sets_per_sender);
            }
        }
        check_invariants(&r);
        assert!(r.counters().snapshot().evicted_for_memory >= 496);
        for rest in &b[1..] {
            if let Some(frame) = r.push(rest, now).unwrap() {
                assert_eq!(frame, frame_of(400));
            }
        }
        assert_eq!(r.counters().snapshot().completed, 1);
    }

    /// The per-sender byte bound, not only the set count: one set growing
    /// past it evicts the sender's older sets first.
    #[test]
    fn the_byte_bound_evicts_the_senders_oldest_set() {
        let config = ReassemblerConfig {
            max_bytes_per_sender: 1000,
            max_sets_per_sender: 10,
            ..ReassemblerConfig::default()
        };
        let mut r = Reassembler::new(config);
        let now = Instant::now();
        r.push(&packet(TAG_A, 1, 0, 9, &[1; 300]), now).unwrap();
        r.push(&packet(TAG_A, 2, 0, 9, &[2; 300]), now).unwrap();
        r.push(&packet(TAG_A, 3, 0, 9, &[3; 300]), now).unwrap();
        assert_eq!(r.counters().snapshot().evicted_for_memory, 0);
        r.push(&packet(TAG_A, 3, 1, 9, &[3; 300]), now).unwrap();
        assert_eq!(r.counters().snapshot().evicted_for_memory, 1);
        let a = &r.senders[&TAG_A];
        assert!(!a.sets.contains_key(&1));
        assert!(a.sets.contains_key(&2) && a.sets.contains_key(&3));
        check_invariants(&r);
    }

    /// Many forged sender tags fill the total bound; the heaviest senders
    /// pay, and a light sender's set survives and completes.
    #[test]
    fn the_total_bound_evicts_from_the_heaviest_sender() {
        let config = ReassemblerConfig {
            max_bytes_per_sender: 2048,
            max_bytes_total: 8192,
            ..ReassemblerConfig::default()
        };
        let mut r = Reassembler::new(config);
        let now = Instant::now();
        let light = fragment(&frame_of(150), TAG_B, 1, 100).unwrap();
        r.push(&light[0], now).unwrap();
        for forged in 0..100u8 {
            let tag = [forged; 8];
            for index in 0..8 {
                r.push(&packet(tag, 1, index, 9, &[forged; 200]), now)
                    .unwrap();
                check_invariants(&r);
            }
        }
        assert!(r.counters().snapshot().evicted_for_memory > 90);
        assert_eq!(r.push(&light[1], now), Ok(Some(frame_of(150))));
    }

    #[test]
    fn a_fragment_too_big_to_ever_hold_is_refused() {
        let config = ReassemblerConfig {
            max_bytes_per_sender: 1000,
            ..ReassemblerConfig::default()
        };
        let mut r = Reassembler::new(config);
        let now = Instant::now();
        r.push(&packet(TAG_A, 1, 0, 2, &[1; 100]), now).unwrap();
        assert_eq!(
            r.push(&packet(TAG_A, 1, 1, 2, &[1; 2000]), now),
            Err(PushError::OverMemoryBound)
        );
        assert_eq!(r.counters().snapshot().evicted_for_memory, 1);
        assert_eq!((r.pending_sets(), r.buffered_bytes()), (0, 0));
    }

    #[test]
    fn malformed_fragments_are_counted_and_drop_their_set() {
        let mut r = Reassembler::default();
        let now = Instant::now();
        let truncated = [MARKER, 1, 2, 3];
        assert_eq!(
            r.push(&truncated, now),
            Err(PushError::Malformed(Malformed::Truncated { len: 4 }))
        );
        // A zero count drops the set it names.
        r.push(&packet(TAG_A, 1, 0, 2, b"aa"), now).unwrap();
        assert_eq!(
            r.push(&packet(TAG_A, 1, 0, 0, b"x"), now),
            Err(PushError::Malformed(Malformed::ZeroCount))
        );
        assert_eq!(r.pending_sets(), 0);

        // index ≥ count drops the set it names.
        r.push(&packet(TAG_A, 2, 0, 3, b"aa"), now).unwrap();
        assert_eq!(
            r.push(&packet(TAG_A, 2, 3, 3, b"bb"), now),
            Err(PushError::Malformed(Malformed::IndexOutOfRange {
                index: 3,
                count: 3
            }))
        );
        assert_eq!(r.pending_sets(), 0);

        // A changed count drops the set.
        r.push(&packet(TAG_A, 3, 0, 3, b"aa"), now).unwrap();
        assert_eq!(
            r.push(&packet(TAG_A, 3, 1, 4, b"bb"), now),
            Err(PushError::Malformed(Malformed::CountChanged {
                was: 3,
                now: 4
            }))
        );
        assert_eq!(r.pending_sets(), 0);

        // Same index, different bytes: the set cannot be trusted.
        r.push(&packet(TAG_A, 4, 0, 2, b"aa"), now).unwrap();
        assert_eq!(
            r.push(&packet(TAG_A, 4, 0, 2, b"ab"), now),
            Err(PushError::Malformed(Malformed::ConflictingDuplicate {
                index: 0
            }))
        );
        assert_eq!(r.pending_sets(), 0);
        // … so its other half does not complete anything.
        assert_eq!(r.push(&packet(TAG_A, 4, 1, 2, b"cc"), now), Ok(None));

        let counters = r.counters().snapshot();
        assert_eq!(counters.malformed, 5);
        assert_eq!(counters.completed, 0);
        check_invariants(&r);
    }

    proptest! {
        /// Any frame, any usable MTU, fragments in any order with some sent
        /// twice: exactly one reassembled frame, identical to the original.
        #[test]
        fn round_trip_in_any_order(
            frame in prop::collection::vec(any::<u8>(), 1..3000),
            mtu in 14usize..600,
            order_keys in prop::collection::vec(any::<u32>(), 255),
            repeats in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
        ) {
            let mtu = mtu.max(HEADER_LEN + frame.len().div_ceil(MAX_FRAGMENTS));
            let packets = fragment(&frame, TAG_A, 0xBEEF, mtu).unwrap();
            prop_assert!(packets.iter().all(|p| p.len() <= mtu));
            let mut order: Vec<usize> = (0..packets.len()).collect();
            order.sort_by_key(|&i| order_keys[i]);
            // Duplicates go in before the last fragment, while the set is open.
            let last = order.pop().unwrap();
            let mut duplicates = 0;
            if !order.is_empty() {
                for index in &repeats {
                    let again = order[index.index(order.len())];
                    order.push(again);
                    duplicates += 1;
                }
            }
            order.push(last);

            let mut r = Reassembler::default();
            let now = Instant::now();
            let mut frames = Vec::new();
            for i in order {
                if let Some(f) = r.push(&packets[i], now).unwrap() {
                    frames.push(f);
                }
            }
            prop_assert_eq!(frames, vec![frame]);
            let counters = r.counters().snapshot();
            prop_assert_eq!(counters.completed, 1);
            prop_assert_eq!(counters.malformed, 0);
            prop_assert_eq!(counters.duplicates, duplicates);
            prop_assert_eq!(r.buffered_bytes(), 0);
        }

        /// Junk never panics and never breaks the bookkeeping. Packets are
        /// biased towards valid-looking headers over a few tags and set ids
        /// so sets really collide, grow, complete and get evicted.
        #[test]
        fn any_bytes_into_push_never_panic(
            packets in prop::collection::vec(
                (any::<bool>(), 0u8..3, 0u16..4, 0u8..6, 0u8..6,
                 prop::collection::vec(any::<u8>(), 0..400), 0u64..30_000),
                0..200),
        ) {
            let config = ReassemblerConfig {
                max_bytes_per_sender: 2048,
                max_bytes_total: 4096,
                max_sets_per_sender: 2,
                ..ReassemblerConfig::default()
            };
            let mut r = Reassembler::new(config);
            let mut now = Instant::now();
            for (shaped, tag, set_id, index, count, bytes, step_ms) in packets {
                now += Duration::from_millis(step_ms);
                let p = if shaped {
                    packet([tag; 8], set_id, index, count, &bytes)
                } else {
                    bytes
                };
                let _ = r.push(&p, now);
                check_invariants(&r);
            }
        }
    }
}
