//! JSON Schemas of what the log shows in JSON (feature `schemars`), for the
//! node's OpenAPI document.

use tidings_keys::string_schema;

string_schema!(
    crate::RecordKey,
    "RecordKey",
    "^[0-9a-f]{64}$",
    "A record id (blake3 of the signed record), or the key of an equivocation proof: 64 hex characters."
);

/// The schema of an entry's chain hash (a `[u8; 32]` written as hex).
pub(crate) struct ChainHash;

string_schema!(
    ChainHash,
    "ChainHash",
    "^[0-9a-f]{64}$",
    "An entry's chain hash: 64 hex characters."
);
