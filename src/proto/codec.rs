//! Bounded, canonical reading of postcard bytes.
//!
//! Records are encoded with postcard (the canonical byte form is the postcard
//! encoding of the struct), but they are decoded here, by hand, so that:
//! - every length prefix is checked against its limit *before* anything is
//!   allocated, and a violation names the field and the limit;
//! - only the canonical form is accepted (shortest varints, no trailing bytes,
//!   sorted unique lists), so one record has exactly one byte form and therefore
//!   one [`RecordId`](super::record::RecordId);
//! - no input, however crafted, can panic.
//!
//! Property tests check that this reader and postcard agree on every valid value.

use std::fmt;

use super::limits::MAX_VARINT_BYTES;

/// A field of a record, named in decoding errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The whole signed record.
    SignedRecord,
    /// The record bytes inside a signed record.
    RecordBytes,
    /// The list of node addresses.
    Addrs,
    /// One node address.
    Addr,
    /// The list of specialists.
    Specialists,
    /// A specialist's name.
    Name,
    /// A specialist's list of capabilities.
    Capabilities,
    /// One capability.
    Capability,
    /// A specialist's endpoint URL.
    Endpoint,
    /// A specialist's metadata map.
    Meta,
    /// A metadata key.
    MetaKey,
    /// A metadata value.
    MetaValue,
    /// The sequence number.
    Seq,
    /// The link to the previous record.
    Prev,
    /// The issue and expiry times.
    Lifetime,
    /// An equivocation proof.
    Proof,
    /// A whole wire frame.
    Frame,
    /// The ranges of a sync message.
    Ranges,
    /// A range's prefix.
    Prefix,
    /// The holdings listed for a range.
    Holdings,
    /// The records of a records message.
    Records,
    /// The origins of a want message.
    Wants,
    /// The proofs of a proofs message.
    Proofs,
    /// A roster genesis.
    RosterGenesis,
    /// A roster operation, signed or not.
    RosterOp,
    /// The members of a roster genesis.
    Members,
    /// A member's label.
    Label,
    /// The approvals of a roster operation.
    Approvals,
    /// The action of a roster operation.
    Action,
    /// A roster fork proof.
    RosterFork,
    /// The roster operations of a message.
    RosterOps,
    /// The records announced in a `Have` message.
    Announced,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Field::SignedRecord => "signed record",
            Field::RecordBytes => "record bytes",
            Field::Addrs => "addresses",
            Field::Addr => "address",
            Field::Specialists => "specialists",
            Field::Name => "specialist name",
            Field::Capabilities => "capabilities",
            Field::Capability => "capability",
            Field::Endpoint => "endpoint",
            Field::Meta => "metadata",
            Field::MetaKey => "metadata key",
            Field::MetaValue => "metadata value",
            Field::Seq => "sequence number",
            Field::Prev => "previous record link",
            Field::Lifetime => "lifetime",
            Field::Proof => "equivocation proof",
            Field::Frame => "frame",
            Field::Ranges => "sync ranges",
            Field::Prefix => "range prefix",
            Field::Holdings => "range holdings",
            Field::Records => "records",
            Field::Wants => "wanted origins",
            Field::Announced => "announced records",
            Field::Proofs => "proofs",
            Field::RosterGenesis => "roster genesis",
            Field::RosterOp => "roster operation",
            Field::Members => "roster members",
            Field::Label => "member label",
            Field::Approvals => "approvals",
            Field::Action => "roster action",
            Field::RosterFork => "roster fork proof",
            Field::RosterOps => "roster operations",
        };
        f.write_str(name)
    }
}

/// Why bytes are not a well-formed, canonical value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The whole input is larger than its limit; nothing was decoded.
    #[error("{field} is {found} bytes, more than the limit of {max}")]
    Oversized {
        field: Field,
        max: usize,
        found: usize,
    },
    /// The input ends in the middle of a value.
    #[error("truncated input")]
    Truncated,
    /// Bytes remain after the value.
    #[error("{count} unexpected trailing bytes")]
    TrailingBytes { count: usize },
    /// A varint is longer than it needs to be.
    #[error("non-canonical varint")]
    NonCanonicalVarint,
    /// A varint does not fit in 64 bits.
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    /// A list or map has more elements than allowed.
    #[error("too many {field}: {found}, the limit is {max}")]
    TooMany {
        field: Field,
        max: usize,
        found: u64,
    },
    /// A string is longer than allowed.
    #[error("{field} is {found} bytes long, the limit is {max}")]
    TooLong {
        field: Field,
        max: usize,
        found: u64,
    },
    /// A string is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 { field: Field },
    /// A list that must be sorted and unique is not.
    #[error("{field} are not sorted and unique")]
    NotSorted { field: Field },
    /// A wire frame of a protocol version this node does not speak.
    #[error("unsupported wire version {0}")]
    UnsupportedWireVersion(u8),
    /// A message type this node does not know.
    #[error("unknown message type {0}")]
    UnknownMessageType(u8),
    /// A value breaks a rule of its field (empty name, control character, ...).
    #[error("invalid {field}: {reason}")]
    Invalid { field: Field, reason: &'static str },
}

/// Reads postcard-encoded values from a byte slice without panicking.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    /// Takes the next `count` bytes.
    pub fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        if count > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let slice = &self.bytes[self.position..self.position + count];
        self.position += count;
        Ok(slice)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// A fixed-size byte array (postcard writes arrays without a length).
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// An unsigned LEB128 varint in its shortest form.
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for index in 0..MAX_VARINT_BYTES {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if index == MAX_VARINT_BYTES - 1 && byte > 1 {
                return Err(DecodeError::VarintOverflow);
            }
            value |= bits << (7 * index);
            if byte & 0x80 == 0 {
                if index > 0 && byte == 0 {
                    return Err(DecodeError::NonCanonicalVarint);
                }
                return Ok(value);
            }
        }
        Err(DecodeError::VarintOverflow)
    }

    /// A list or map length, checked against `max` before the caller allocates.
    pub fn count(&mut self, field: Field, max: usize) -> Result<usize, DecodeError> {
        let found = self.varint()?;
        match usize::try_from(found) {
            Ok(count) if count <= max => Ok(count),
            _ => Err(DecodeError::TooMany { field, max, found }),
        }
    }

    /// Length-prefixed bytes of at most `max` bytes.
    pub fn bytes(&mut self, field: Field, max: usize) -> Result<&'a [u8], DecodeError> {
        let found = self.varint()?;
        match usize::try_from(found) {
            Ok(length) if length <= max => self.take(length),
            _ => Err(DecodeError::TooLong { field, max, found }),
        }
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes.
    pub fn str(&mut self, field: Field, max: usize) -> Result<&'a str, DecodeError> {
        let bytes = self.bytes(field, max)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { field })
    }

    /// Succeeds only if every byte was read.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

/// Refuses an input of `len` bytes above `max` before anything is decoded.
pub fn check_size(field: Field, max: usize, len: usize) -> Result<(), DecodeError> {
    if len > max {
        return Err(DecodeError::Oversized {
            field,
            max,
            found: len,
        });
    }
    Ok(())
}

/// The number of bytes [`write_varint`] writes for `value`.
pub fn varint_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Appends `value` as a postcard varint.
pub fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_len_is_what_write_varint_writes() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            write_varint(&mut out, value);
            assert_eq!(varint_len(value), out.len(), "{value}");
        }
    }

    #[test]
    fn varint_rejects_overlong_and_overflow() {
        assert_eq!(Reader::new(&[0x00]).varint(), Ok(0));
        assert_eq!(Reader::new(&[0x80, 0x01]).varint(), Ok(128));
        assert_eq!(
            Reader::new(&[0x80, 0x00]).varint(),
            Err(DecodeError::NonCanonicalVarint)
        );
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(Reader::new(&max).varint(), Ok(u64::MAX));
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_eq!(
            Reader::new(&over).varint(),
            Err(DecodeError::VarintOverflow)
        );
        assert_eq!(
            Reader::new(&[0xff; 11]).varint(),
            Err(DecodeError::VarintOverflow)
        );
        assert_eq!(Reader::new(&[0x80]).varint(), Err(DecodeError::Truncated));
    }

    #[test]
    fn limits_are_checked_before_reading() {
        // Claims a 2^40-byte string in a 6-byte input: refused on the prefix alone.
        let mut input = Vec::new();
        write_varint(&mut input, 1 << 40);
        assert!(matches!(
            Reader::new(&input).str(Field::Name, 64),
            Err(DecodeError::TooLong { found, .. }) if found == 1 << 40
        ));
        assert!(matches!(
            Reader::new(&input).count(Field::Specialists, 64),
            Err(DecodeError::TooMany { .. })
        ));
    }

    proptest! {
        #[test]
        fn varint_agrees_with_postcard(value in any::<u64>()) {
            let mut ours = Vec::new();
            write_varint(&mut ours, value);
            prop_assert_eq!(&ours, &postcard::to_allocvec(&value).unwrap());
            let mut reader = Reader::new(&ours);
            prop_assert_eq!(reader.varint().unwrap(), value);
            prop_assert!(reader.finish().is_ok());
        }
    }
}
