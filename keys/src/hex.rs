//! Lowercase hexadecimal, for hashes and ids that people compare by eye.

use std::fmt::Write;

/// Encodes bytes as lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Why a text is not hex of the expected length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// Wrong number of characters.
    #[error("expected {expected} hex characters, found {found}")]
    WrongLength { expected: usize, found: usize },
    /// A character outside `0-9a-fA-F`.
    #[error("invalid hex character at position {position}")]
    InvalidCharacter { position: usize },
}

/// Decodes hex text of any even length (either case).
pub fn decode(text: &str) -> Result<Vec<u8>, HexError> {
    let bytes = text.as_bytes();
    if let Some(position) = bytes.iter().position(|byte| !byte.is_ascii()) {
        return Err(HexError::InvalidCharacter { position });
    }
    if bytes.len() % 2 == 1 {
        return Err(HexError::WrongLength {
            expected: bytes.len() + 1,
            found: bytes.len(),
        });
    }
    (0..bytes.len() / 2)
        .map(|index| {
            let pair = &text[2 * index..2 * index + 2];
            decode_exact::<1>(pair)
                .map(|[byte]| byte)
                .map_err(|error| match error {
                    HexError::InvalidCharacter { position } => HexError::InvalidCharacter {
                        position: 2 * index + position,
                    },
                    other => other,
                })
        })
        .collect()
}

/// Decodes exactly `N` bytes from hex text (either case).
pub fn decode_exact<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N {
        return Err(HexError::WrongLength {
            expected: 2 * N,
            found: text.chars().count(),
        });
    }
    let nibble = |position: usize| -> Result<u8, HexError> {
        match bytes[position] {
            digit @ b'0'..=b'9' => Ok(digit - b'0'),
            letter @ b'a'..=b'f' => Ok(letter - b'a' + 10),
            letter @ b'A'..=b'F' => Ok(letter - b'A' + 10),
            _ => Err(HexError::InvalidCharacter { position }),
        }
    };
    let mut out = [0u8; N];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = (nibble(2 * index)? << 4) | nibble(2 * index + 1)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let bytes = [0x00, 0xab, 0xff, 0x10];
        assert_eq!(encode(&bytes), "00abff10");
        assert_eq!(decode_exact::<4>("00ABff10"), Ok(bytes));
        assert!(matches!(
            decode_exact::<4>("00abff1"),
            Err(HexError::WrongLength { .. })
        ));
        assert_eq!(decode("00abFF10"), Ok(bytes.to_vec()));
        assert!(decode("abc").is_err());
        assert!(
            decode("aé").is_err(),
            "non-ASCII text is refused, not sliced"
        );
        assert_eq!(
            decode("00g0"),
            Err(HexError::InvalidCharacter { position: 2 })
        );
        assert_eq!(
            decode_exact::<2>("0g00"),
            Err(HexError::InvalidCharacter { position: 1 })
        );
    }
}
