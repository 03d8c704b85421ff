//! JSON Schemas of the ids, as their JSON form writes them (feature
//! `schemars`): the node's OpenAPI document refers to them by name.

/// Implements `schemars::JsonSchema` for a type whose JSON form is one string
/// of a pattern: `string_schema!(Type, "Name", "pattern", "description")`.
/// The schema is named, so documents refer to it once.
#[macro_export]
macro_rules! string_schema {
    ($type:ty, $name:literal, $pattern:literal, $description:literal) => {
        impl $crate::schemars::JsonSchema for $type {
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut $crate::schemars::SchemaGenerator) -> $crate::schemars::Schema {
                $crate::schemars::json_schema!({
                    "type": "string",
                    "description": $description,
                    "pattern": $pattern,
                })
            }
        }
    };
}

string_schema!(
    crate::NodeId,
    "NodeId",
    "^[a-z2-7]{52}$",
    "A node id: the ed25519 public key in lowercase base32, 52 characters."
);
string_schema!(
    crate::FederationId,
    "FederationId",
    "^[0-9a-f]{64}$",
    "A federation id: blake3 of the federation's name, 64 hex characters."
);

#[cfg(test)]
mod tests {
    use crate::FederationId;

    /// The patterns describe what the ids serialize to.
    #[test]
    fn the_patterns_match_the_json_form() {
        use rand_chacha::rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let node = crate::Identity::generate(&mut rng).node_id();
        let text = serde_json::to_value(node).unwrap();
        let text = text.as_str().unwrap();
        assert_eq!(text.len(), 52);
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)));
        let federation = FederationId::from_name("schema test");
        let text = serde_json::to_value(federation).unwrap();
        let text = text.as_str().unwrap();
        assert_eq!(text.len(), 64);
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
}
