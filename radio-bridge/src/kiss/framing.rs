//! KISS framing: the byte-stuffing that turns a serial byte stream into
//! frames, in both directions.
//!
//! A frame on the wire is `FEND command escaped-data FEND`. Inside the data
//! `FEND` is sent as `FESC TFEND` and `FESC` as `FESC TFESC`, so a `FEND` on
//! the line always means a frame boundary. That property is what lets the
//! [`Deframer`] resynchronise after any damage: whatever happens, the next
//! `FEND` starts a clean frame.
//!
//! The deframer is a pure state machine (no clock, no I/O) so it can be
//! property-tested and fuzzed. The one timing rule, "a partial frame
//! followed by silence is garbage", is applied by the link driver calling
//! [`Deframer::expire_partial`] when its silence timer fires.

use super::commands::HARDWARE_MTU;

/// Frame delimiter.
pub const FEND: u8 = 0xC0;
/// Escape introducer.
pub const FESC: u8 = 0xDB;
/// `FESC TFEND` stands for a data byte `0xC0`.
pub const TFEND: u8 = 0xDC;
/// `FESC TFESC` stands for a data byte `0xDB`.
pub const TFESC: u8 = 0xDD;

/// Largest frame body (command byte + unescaped data) the deframer keeps.
/// The hardware MTU plus room for the command byte and the few
/// non-data replies that carry a little more; anything longer cannot be a
/// frame an RNode sends during normal operation, and an unbounded buffer
/// would let a noisy line eat memory.
pub const MAX_FRAME_BODY: usize = 1 + HARDWARE_MTU + 64;

/// One KISS frame: the command byte and its unescaped payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KissFrame {
    pub command: u8,
    pub data: Vec<u8>,
}

/// Why bytes were thrown away instead of becoming a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Bytes arrived outside any frame (before the first FEND, or after a
    /// partial frame was expired).
    Junk,
    /// `FESC` followed by something other than `TFEND`/`TFESC`.
    BadEscape,
    /// The frame grew past [`MAX_FRAME_BODY`].
    Oversize,
}

/// What the deframer produced from the bytes fed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deframed {
    Frame(KissFrame),
    Dropped(DropReason),
}

/// Encode one frame: `FEND command escaped(data) FEND`.
pub fn encode(command: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 4);
    encode_into(&mut out, command, data);
    out
}

/// Append one encoded frame to `out`.
pub fn encode_into(out: &mut Vec<u8>, command: u8, data: &[u8]) {
    out.push(FEND);
    push_escaped(out, command);
    for &byte in data {
        push_escaped(out, byte);
    }
    out.push(FEND);
}

fn push_escaped(out: &mut Vec<u8>, byte: u8) {
    match byte {
        FEND => out.extend_from_slice(&[FESC, TFEND]),
        FESC => out.extend_from_slice(&[FESC, TFESC]),
        other => out.push(other),
    }
}

#[derive(Debug)]
enum State {
    /// Not yet aligned to a frame boundary; `junk` says whether any byte was
    /// skipped so far (reported once, when the next FEND arrives).
    Unsynced { junk: bool },
    /// Collecting a frame body; `escaped` is set after a FESC.
    InFrame { escaped: bool },
    /// The current frame is already known to be bad (and was reported);
    /// skip to the next FEND.
    Discarding,
}

/// Streaming KISS deframer.
///
/// Feed it bytes in whatever chunks the serial port delivers; it returns
/// every complete frame and every drop, in order. It never panics and its
/// memory is bounded by [`MAX_FRAME_BODY`].
#[derive(Debug)]
pub struct Deframer {
    state: State,
    body: Vec<u8>,
}

impl Default for Deframer {
    fn default() -> Self {
        Deframer::new()
    }
}

impl Deframer {
    /// A deframer waiting for its first FEND. Bytes before it are junk: a
    /// freshly opened port can hold the tail of an earlier conversation.
    pub fn new() -> Deframer {
        Deframer {
            state: State::Unsynced { junk: false },
            body: Vec::with_capacity(MAX_FRAME_BODY),
        }
    }

    /// Feed a chunk; returns what it completed (usually empty or one frame).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Deframed> {
        let mut out = Vec::new();
        for &byte in bytes {
            if let Some(item) = self.push(byte) {
                out.push(item);
            }
        }
        out
    }

    /// Feed one byte.
    pub fn push(&mut self, byte: u8) -> Option<Deframed> {
        match self.state {
            State::Unsynced { junk } => {
                if byte == FEND {
                    self.start_frame();
                    junk.then_some(Deframed::Dropped(DropReason::Junk))
                } else {
                    self.state = State::Unsynced { junk: true };
                    None
                }
            }
            State::Discarding => {
                if byte == FEND {
                    self.start_frame();
                }
                None
            }
            State::InFrame { escaped } => {
                if byte == FEND {
                    // A FEND is always a boundary, even right after FESC: the
                    // frame it ends is broken, the next one starts clean.
                    let finished = if escaped {
                        Some(Deframed::Dropped(DropReason::BadEscape))
                    } else {
                        self.take_frame().map(Deframed::Frame)
                    };
                    self.start_frame();
                    return finished;
                }
                let data_byte = if escaped {
                    match byte {
                        TFEND => FEND,
                        TFESC => FESC,
                        _ => return self.discard(DropReason::BadEscape),
                    }
                } else if byte == FESC {
                    self.state = State::InFrame { escaped: true };
                    return None;
                } else {
                    byte
                };
                if self.body.len() >= MAX_FRAME_BODY {
                    return self.discard(DropReason::Oversize);
                }
                self.body.push(data_byte);
                self.state = State::InFrame { escaped: false };
                None
            }
        }
    }

    /// True when bytes of an unfinished frame are buffered, i.e. when a
    /// silence on the line would leave something to throw away.
    pub fn has_partial(&self) -> bool {
        match self.state {
            State::InFrame { escaped } => escaped || !self.body.is_empty(),
            State::Discarding => true,
            State::Unsynced { junk } => junk,
        }
    }

    /// Called after a silence: throw away any unfinished frame and wait for
    /// the next FEND. Returns true when an unfinished frame (not already
    /// reported as a drop) was thrown away.
    pub fn expire_partial(&mut self) -> bool {
        let dropped = match self.state {
            State::InFrame { escaped } => escaped || !self.body.is_empty(),
            // Already reported when it went bad.
            State::Discarding => false,
            // Loose bytes with no FEND at all are a partial frame too.
            State::Unsynced { junk } => junk,
        };
        if self.has_partial() {
            self.body.clear();
            self.state = State::Unsynced { junk: false };
        }
        dropped
    }

    fn start_frame(&mut self) {
        self.body.clear();
        self.state = State::InFrame { escaped: false };
    }

    fn discard(&mut self, reason: DropReason) -> Option<Deframed> {
        self.body.clear();
        self.state = State::Discarding;
        Some(Deframed::Dropped(reason))
    }

    /// The buffered body as a frame; `None` for an empty body, which is
    /// just two FENDs in a row (senders use them to flush the receiver).
    fn take_frame(&mut self) -> Option<KissFrame> {
        let (&command, data) = self.body.split_first()?;
        let frame = KissFrame {
            command,
            data: data.to_vec(),
        };
        self.body.clear();
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(items: Vec<Deframed>) -> Vec<KissFrame> {
        items
            .into_iter()
            .filter_map(|d| match d {
                Deframed::Frame(f) => Some(f),
                Deframed::Dropped(_) => None,
            })
            .collect()
    }

    #[test]
    fn encode_escapes_fend_and_fesc() {
        assert_eq!(
            encode(0x00, &[0x01, FEND, 0x02, FESC, 0x03]),
            vec![FEND, 0x00, 0x01, FESC, TFEND, 0x02, FESC, TFESC, 0x03, FEND]
        );
        assert_eq!(encode(0x08, &[0x73]), vec![FEND, 0x08, 0x73, FEND]);
    }

    #[test]
    fn decodes_frames_split_across_chunks() {
        let wire = encode(0x00, b"hello");
        let mut d = Deframer::new();
        let mut out = Vec::new();
        for chunk in wire.chunks(2) {
            out.extend(d.feed(chunk));
        }
        assert_eq!(
            out,
            vec![Deframed::Frame(KissFrame {
                command: 0,
                data: b"hello".to_vec()
            })]
        );
        assert!(!d.has_partial());
    }

    #[test]
    fn back_to_back_fends_are_not_frames() {
        let mut d = Deframer::new();
        let mut wire = vec![FEND, FEND, FEND];
        wire.extend(encode(0x23, &[77]));
        wire.extend([FEND, FEND]);
        wire.extend(encode(0x24, &[29]));
        let out = d.feed(&wire);
        assert_eq!(
            out,
            vec![
                Deframed::Frame(KissFrame {
                    command: 0x23,
                    data: vec![77]
                }),
                Deframed::Frame(KissFrame {
                    command: 0x24,
                    data: vec![29]
                }),
            ]
        );
    }

    #[test]
    fn shared_fend_between_frames_works() {
        // FEND a FEND b FEND: the middle FEND closes one frame and opens the next.
        let mut d = Deframer::new();
        let out = d.feed(&[FEND, 0x00, 1, FEND, 0x00, 2, FEND]);
        assert_eq!(frames(out).len(), 2);
    }

    #[test]
    fn junk_before_first_fend_is_reported_once() {
        let mut d = Deframer::new();
        let mut wire = b"garbage".to_vec();
        wire.extend(encode(0x00, b"ok"));
        let out = d.feed(&wire);
        assert_eq!(out[0], Deframed::Dropped(DropReason::Junk));
        assert_eq!(frames(out[1..].to_vec())[0].data, b"ok");
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn bad_escape_drops_the_frame_and_resyncs() {
        let mut d = Deframer::new();
        let mut wire = vec![FEND, 0x00, 0x41, FESC, 0x41, 0x42, FEND];
        wire.extend(encode(0x00, b"next"));
        let out = d.feed(&wire);
        assert_eq!(
            out,
            vec![
                Deframed::Dropped(DropReason::BadEscape),
                Deframed::Frame(KissFrame {
                    command: 0,
                    data: b"next".to_vec()
                })
            ]
        );
    }

    #[test]
    fn fesc_then_fend_is_a_bad_escape_and_a_boundary() {
        let mut d = Deframer::new();
        let out = d.feed(&[FEND, 0x00, 0x41, FESC, FEND, 0x00, 0x42, FEND]);
        assert_eq!(out[0], Deframed::Dropped(DropReason::BadEscape));
        assert_eq!(frames(out)[0].data, vec![0x42]);
    }

    #[test]
    fn oversize_frame_is_dropped_once_and_next_frame_decodes() {
        let mut d = Deframer::new();
        let mut wire = vec![FEND, 0x00];
        wire.extend(std::iter::repeat_n(0x55, MAX_FRAME_BODY + 100));
        wire.push(FEND);
        wire.extend(encode(0x00, b"after"));
        let out = d.feed(&wire);
        assert_eq!(
            out,
            vec![
                Deframed::Dropped(DropReason::Oversize),
                Deframed::Frame(KissFrame {
                    command: 0,
                    data: b"after".to_vec()
                })
            ]
        );
    }

    #[test]
    fn largest_legal_frame_fits() {
        let data = vec![FEND; HARDWARE_MTU];
        let mut d = Deframer::new();
        let out = d.feed(&encode(0x00, &data));
        assert_eq!(frames(out)[0].data, data);
    }

    #[test]
    fn expire_partial_drops_unfinished_frame_and_next_decodes() {
        let mut d = Deframer::new();
        assert!(d.feed(&[FEND, 0x00, 0x41, 0x42]).is_empty());
        assert!(d.has_partial());
        assert!(d.expire_partial());
        assert!(!d.has_partial());
        let out = d.feed(&encode(0x00, b"fresh"));
        assert_eq!(frames(out)[0].data, b"fresh");
    }

    #[test]
    fn expire_with_nothing_buffered_drops_nothing() {
        let mut d = Deframer::new();
        d.feed(&encode(0x00, b"x"));
        assert!(!d.has_partial());
        assert!(!d.expire_partial());
    }

    #[test]
    fn expire_after_reported_drop_is_not_counted_twice() {
        let mut d = Deframer::new();
        let out = d.feed(&[FEND, 0x00, FESC, 0x01, 0x02]);
        assert_eq!(out, vec![Deframed::Dropped(DropReason::BadEscape)]);
        assert!(d.has_partial());
        assert!(!d.expire_partial());
        assert!(!d.has_partial());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096),
            chunk in 1usize..64,
        ) {
            let mut d = Deframer::new();
            for part in bytes.chunks(chunk) {
                for item in d.feed(part) {
                    if let Deframed::Frame(f) = item {
                        prop_assert!(f.data.len() < MAX_FRAME_BODY);
                    }
                }
                prop_assert!(d.body.len() <= MAX_FRAME_BODY);
            }
            d.expire_partial();
            prop_assert!(!d.has_partial());
        }

        #[test]
        fn encode_then_deframe_round_trips(
            payloads in proptest::collection::vec(
                (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..HARDWARE_MTU)),
                1..8,
            ),
            chunk in 1usize..97,
        ) {
            let mut wire = Vec::new();
            for (command, data) in &payloads {
                encode_into(&mut wire, *command, data);
            }
            let mut d = Deframer::new();
            let mut out = Vec::new();
            for part in wire.chunks(chunk) {
                out.extend(d.feed(part));
            }
            let expected: Vec<Deframed> = payloads
                .into_iter()
                .map(|(command, data)| Deframed::Frame(KissFrame { command, data }))
                .collect();
            prop_assert_eq!(out, expected);
        }

        #[test]
        fn garbage_prefix_never_hides_the_next_frame(
            junk in proptest::collection::vec(any::<u8>(), 0..600),
            data in proptest::collection::vec(any::<u8>(), 0..HARDWARE_MTU),
        ) {
            // After silence (expire) any garbage is forgotten and a clean
            // frame decodes exactly.
            let mut d = Deframer::new();
            d.feed(&junk);
            d.expire_partial();
            let out = frames(d.feed(&encode(0x00, &data)));
            prop_assert_eq!(out, vec![KissFrame { command: 0, data }]);
        }
    }
}
