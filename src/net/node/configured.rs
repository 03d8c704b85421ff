//! Which of the node's specialists its configuration file owns.
//!
//! The node announces two sets together: the `[[specialist]]` blocks of its
//! configuration file, owned by the file, and those announced through the API,
//! owned by the API. The rule:
//!
//! - The file's set is applied when the node starts and when it is reloaded
//!   (SIGHUP): a block added is announced, a block changed is updated, a block
//!   removed is withdrawn.
//! - The API cannot withdraw or replace a specialist the file owns (409
//!   `configured-specialist`): edit the file and reload instead. Whatever the
//!   API announced stays announced across restarts and reloads until the API
//!   withdraws it.
//!
//! To tell a block removed from the file from a specialist the API announced,
//! the node keeps the names the file owned at its last start or reload in
//! `DATA_DIR/configured-specialists`, one per line.

use std::collections::BTreeSet;
use std::path::Path;

use crate::proto::Specialist;

/// The file, in the data directory.
pub(super) const FILE: &str = "configured-specialists";

/// The names the file owned when last applied (none if never).
pub(super) fn read(data_dir: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(data_dir.join(FILE))
        .map(|text| {
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Records `names` as the file's, atomically (a new file renamed over the old).
pub(super) fn write(data_dir: &Path, names: &BTreeSet<String>) -> std::io::Result<()> {
    let mut text = String::new();
    for name in names {
        text.push_str(name);
        text.push('\n');
    }
    let temporary = data_dir.join(format!("{FILE}.new"));
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, data_dir.join(FILE))
}

/// The names of `specialists`.
pub(super) fn names(specialists: &[Specialist]) -> BTreeSet<String> {
    specialists.iter().map(|s| s.name.clone()).collect()
}

/// What the node announces after applying the file's `configured` set to what
/// it announced before (`current`), where `owned` are the names the file owned
/// until now: the file's set, then every earlier specialist the file did not
/// own and does not name.
pub(super) fn apply(
    current: &[Specialist],
    owned: &BTreeSet<String>,
    configured: &[Specialist],
) -> Vec<Specialist> {
    let named = names(configured);
    let mut out = configured.to_vec();
    out.extend(
        current
            .iter()
            .filter(|s| !owned.contains(&s.name) && !named.contains(&s.name))
            .cloned(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specialist(name: &str, endpoint: &str) -> Specialist {
        Specialist {
            name: name.into(),
            capabilities: vec!["x".into()],
            endpoint: endpoint.into(),
            meta: Default::default(),
        }
    }

    #[test]
    fn the_file_owns_its_blocks_and_the_api_keeps_its_own() {
        let owned: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
        let current = vec![
            specialist("a", "https://a.example"),
            specialist("b", "https://b.example"),
            specialist("api", "https://api.example"),
        ];
        // b removed from the file, a changed, c added; the API's stays.
        let configured = vec![
            specialist("a", "https://a2.example"),
            specialist("c", "https://c.example"),
        ];
        let applied = apply(&current, &owned, &configured);
        let shown: Vec<(&str, &str)> = applied
            .iter()
            .map(|s| (s.name.as_str(), s.endpoint.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("a", "https://a2.example"),
                ("c", "https://c.example"),
                ("api", "https://api.example")
            ]
        );
        // A name the API announced that the file now names: the file's wins.
        let applied = apply(
            &current,
            &owned,
            &[specialist("api", "https://file.example")],
        );
        assert_eq!(applied.len(), 1);
        assert_eq!(applied[0].endpoint, "https://file.example");
    }

    #[test]
    fn the_owned_names_survive_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).is_empty());
        let owned: BTreeSet<String> = ["ocr".to_string(), "translate".to_string()].into();
        write(dir.path(), &owned).unwrap();
        assert_eq!(read(dir.path()), owned);
    }
}
