//! Lowercase RFC 4648 base32 without padding, for showing keys to people.
//!
//! Decoding is strict: the text must be exactly as long as the encoding of the
//! expected number of bytes, and the unused low bits of the last character must be
//! zero, so every value has exactly one text form. Upper case is accepted and
//! folded, because people copy keys through tools that change case.

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Number of base32 characters that encode `bytes` bytes without padding.
pub const fn encoded_len(bytes: usize) -> usize {
    (bytes * 8).div_ceil(5)
}

/// Encodes `bytes` as lowercase base32 without padding.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(encoded_len(bytes.len()));
    let mut buffer: u32 = 0;
    let mut bits: u32 = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Why a base32 text did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Base32Error {
    /// The text has the wrong number of characters for the expected value.
    #[error("expected {expected} base32 characters, found {found}")]
    WrongLength { expected: usize, found: usize },
    /// A character outside `a-z2-7`.
    #[error("invalid base32 character {character:?} at position {position}")]
    InvalidCharacter { character: char, position: usize },
    /// The last character carries bits beyond the value: another spelling of it.
    #[error("non-canonical base32: the unused trailing bits are not zero")]
    NonCanonical,
}

fn value_of(character: u8) -> Option<u32> {
    match character {
        b'a'..=b'z' => Some(u32::from(character - b'a')),
        b'A'..=b'Z' => Some(u32::from(character - b'A')),
        b'2'..=b'7' => Some(u32::from(character - b'2') + 26),
        _ => None,
    }
}

/// Decodes exactly `N` bytes from `text`.
pub fn decode_exact<const N: usize>(text: &str) -> Result<[u8; N], Base32Error> {
    let expected = encoded_len(N);
    let found = text.chars().count();
    if found != expected {
        return Err(Base32Error::WrongLength { expected, found });
    }
    let mut out = [0u8; N];
    let mut written = 0;
    let mut buffer: u32 = 0;
    let mut bits: u32 = 0;
    for (position, &character) in text.as_bytes().iter().enumerate() {
        let value = value_of(character).ok_or(Base32Error::InvalidCharacter {
            character: char::from(character),
            position,
        })?;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out[written] = ((buffer >> bits) & 0xff) as u8;
            written += 1;
        }
        buffer &= (1 << bits) - 1;
    }
    if buffer != 0 {
        return Err(Base32Error::NonCanonical);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vectors() {
        // RFC 4648 section 10, lower-cased and unpadded.
        assert_eq!(encode(b"f"), "my");
        assert_eq!(encode(b"fo"), "mzxq");
        assert_eq!(encode(b"foobar"), "mzxw6ytboi");
        assert_eq!(decode_exact::<6>("mzxw6ytboi").unwrap(), *b"foobar");
        assert_eq!(decode_exact::<6>("MZXW6YTBOI").unwrap(), *b"foobar");
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!(
            decode_exact::<1>("mz"),
            Err(Base32Error::NonCanonical),
            "'z' sets bits past the single byte"
        );
        assert!(matches!(
            decode_exact::<1>("m"),
            Err(Base32Error::WrongLength {
                expected: 2,
                found: 1
            })
        ));
        assert!(matches!(
            decode_exact::<1>("m1"),
            Err(Base32Error::InvalidCharacter {
                character: '1',
                position: 1
            })
        ));
        assert!(matches!(
            decode_exact::<1>("mé"),
            Err(Base32Error::InvalidCharacter { position: 1, .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::array::uniform32(any::<u8>())) {
            let text = encode(&bytes);
            prop_assert_eq!(text.len(), encoded_len(32));
            prop_assert_eq!(decode_exact::<32>(&text).unwrap(), bytes);
        }
    }
}
