//! A CBOR reader that accepts only the canonical encoding of docs/protocol.md
//! §2: every head in its shortest form, definite lengths only, text strings
//! valid UTF-8, no reserved additional-information values.
//!
//! Written here rather than taken from `cbor4ii` because a general decoder
//! accepts non-shortest heads and indefinite lengths, and a frame must be
//! rejected for either: the signature covers the bytes as sent, so one
//! message must have exactly one encoding (one `msg_id`). Every failure is a
//! [`FrameError::Malformed`] naming the field and what was wrong.

use super::FrameError;

/// CBOR major types (RFC 8949 §3.1).
const UINT: u8 = 0;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
const TAG: u8 = 6;
const SIMPLE: u8 = 7;

/// The additional-information value of an indefinite length (or a break).
const INDEFINITE: u8 = 31;

/// Simple values `false` and `true` (major type 7).
const FALSE: u64 = 20;
const TRUE: u64 = 21;

/// Largest count an array in a known field may declare: bounds allocation
/// from a hostile length long before the frame size limit would.
pub(crate) const MAX_ITEMS: u64 = 4096;

/// One data item's head: its major type and argument.
struct Head {
    major: u8,
    arg: u64,
}

/// Reads canonical CBOR items from a byte slice, front to back.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    /// What has not been read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], FrameError> {
        match usize::try_from(n) {
            Ok(n) if n <= self.rest.len() => {
                let (taken, rest) = self.rest.split_at(n);
                self.rest = rest;
                Ok(taken)
            }
            _ => Err(malformed(what, "truncated: the item runs past the frame")),
        }
    }

    /// Reads a head, enforcing the shortest form of its argument.
    fn head(&mut self, what: &str) -> Result<Head, FrameError> {
        let initial = self.take(1, what)?[0];
        let major = initial >> 5;
        let info = initial & 0x1f;
        let (arg, smallest) = match info {
            0..=23 => {
                return Ok(Head {
                    major,
                    arg: info.into(),
                })
            }
            24 => (u64::from(self.take(1, what)?[0]), 24),
            25 => (be_uint(self.take(2, what)?), 0x100),
            26 => (be_uint(self.take(4, what)?), 0x1_0000),
            27 => (be_uint(self.take(8, what)?), 0x1_0000_0000),
            INDEFINITE => {
                return Err(malformed(
                    what,
                    "indefinite lengths (and break codes) are not allowed",
                ))
            }
            _ => return Err(malformed(what, "reserved additional information 28-30")),
        };
        let canonical = match (major, info) {
            // Simple values below 32 are only ever written in the initial
            // byte (RFC 8949 §3.3).
            (SIMPLE, 24) => arg >= 32,
            // Floats: the three widths are three different values to this
            // reader, which never interprets them.
            (SIMPLE, _) => true,
            _ => arg >= smallest,
        };
        if !canonical {
            return Err(malformed(
                what,
                "a head not in its shortest form (non-canonical encoding)",
            ));
        }
        Ok(Head { major, arg })
    }

    fn expect(&mut self, major: u8, what: &str, expected: &str) -> Result<u64, FrameError> {
        let head = self.head(what)?;
        if head.major != major {
            return Err(malformed(what, &format!("expected {expected}")));
        }
        Ok(head.arg)
    }

    pub fn uint(&mut self, what: &str) -> Result<u64, FrameError> {
        self.expect(UINT, what, "an unsigned integer")
    }

    pub fn bytes(&mut self, what: &str) -> Result<&'a [u8], FrameError> {
        let len = self.expect(BYTES, what, "a byte string")?;
        self.take(len, what)
    }

    pub fn fixed<const N: usize>(&mut self, what: &str) -> Result<[u8; N], FrameError> {
        let b = self.bytes(what)?;
        b.try_into().map_err(|_| {
            FrameError::Malformed(format!("{what}: expected {N} bytes, got {}", b.len()))
        })
    }

    pub fn bool(&mut self, what: &str) -> Result<bool, FrameError> {
        match self.head(what)? {
            Head {
                major: SIMPLE,
                arg: FALSE,
            } => Ok(false),
            Head {
                major: SIMPLE,
                arg: TRUE,
            } => Ok(true),
            _ => Err(malformed(what, "expected true or false")),
        }
    }

    /// An array header of a known field; at most [`MAX_ITEMS`] items.
    pub fn array(&mut self, what: &str) -> Result<usize, FrameError> {
        let n = self.expect(ARRAY, what, "an array")?;
        if n > MAX_ITEMS {
            return Err(FrameError::Malformed(format!(
                "{what}: {n} items is more than the limit of {MAX_ITEMS}"
            )));
        }
        self.count(n, 1, what)
    }

    /// A map header; the count is only bounded by the bytes left.
    pub fn map(&mut self, what: &str) -> Result<usize, FrameError> {
        let n = self.expect(MAP, what, "a map")?;
        self.count(n, 2, what)
    }

    /// Each item takes at least one byte, so a count larger than what is
    /// left is truncation; checking it here keeps allocations honest.
    fn count(&self, n: u64, items_each: u64, what: &str) -> Result<usize, FrameError> {
        match n
            .checked_mul(items_each)
            .and_then(|n| usize::try_from(n).ok())
        {
            Some(items) if items <= self.rest.len() => Ok(n as usize),
            _ => Err(malformed(what, "truncated: more items than bytes left")),
        }
    }

    /// Skips one whole item of any type, checking the encoding rules inside
    /// it (how unknown keys are read). Iterative, so nesting depth costs no
    /// stack: `pending` counts the items still to read.
    pub fn skip(&mut self, what: &str) -> Result<(), FrameError> {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let head = self.head(what)?;
            let more = match head.major {
                BYTES => self.take(head.arg, what).map(|_| 0)?,
                TEXT => {
                    let text = self.take(head.arg, what)?;
                    if std::str::from_utf8(text).is_err() {
                        return Err(malformed(what, "a text string that is not valid UTF-8"));
                    }
                    0
                }
                ARRAY => head.arg,
                MAP => head.arg.saturating_mul(2),
                TAG => 1,
                _ => 0, // integers and simple values: the head was all of it
            };
            pending = pending.saturating_add(more);
            if pending > self.rest.len() as u64 {
                return Err(malformed(what, "truncated: more items than bytes left"));
            }
        }
        Ok(())
    }
}

fn be_uint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, b| acc << 8 | u64::from(*b))
}

pub(crate) fn malformed(what: &str, reason: &str) -> FrameError {
    FrameError::Malformed(format!("{what}: {reason}"))
}
