//! `Roster`: the keys a federation admits, read from a TOML file.
//!
//! ```toml
//! threshold = 3        # optional: approvals a roster operation needs
//!                      # (default: floor(2n/3) + 1, recomputed as n changes)
//! [[member]]
//! id = "<52 base32 characters>"
//! label = "alice"      # optional, for people
//! ```
//!
//! Loading checks every id: it must parse, be a usable ed25519 key (canonical, not
//! of small order) and appear once. Errors name the member by position and label.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::node_id::{NodeId, WeakKeyError};

/// Largest roster file we read (about 50,000 members).
const MAX_ROSTER_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// The admitted members of a federation, each with an optional label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    members: BTreeMap<NodeId, Option<String>>,
    threshold: Option<u32>,
}

/// Why a roster could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    /// The file could not be read.
    #[error("roster {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file is larger than any sane roster.
    #[error("roster {path} is larger than {MAX_ROSTER_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    /// The text is not TOML of the expected shape.
    #[error("roster is not valid: {0}")]
    Syntax(String),
    /// A member's id is not a node id.
    #[error("roster member #{position}{label}: invalid id: {reason}")]
    InvalidId {
        position: usize,
        label: String,
        reason: String,
    },
    /// A member's id is not a usable key.
    #[error("roster member #{position}{label}: {reason}")]
    WeakKey {
        position: usize,
        label: String,
        reason: WeakKeyError,
    },
    /// The same id twice.
    #[error("roster member #{position}{label}: id {id} is listed twice")]
    Duplicate {
        position: usize,
        label: String,
        id: NodeId,
    },
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RosterFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    threshold: Option<u32>,
    #[serde(default)]
    member: Vec<MemberEntry>,
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct MemberEntry {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<String>,
}

impl Roster {
    /// An empty roster.
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits `id` with an optional label. Returns false if it was already admitted.
    pub fn insert(&mut self, id: NodeId, label: Option<String>) -> bool {
        self.members.insert(id, label).is_none()
    }

    /// Removes `id`; returns its label entry if it was admitted.
    pub fn remove(&mut self, id: &NodeId) -> Option<Option<String>> {
        self.members.remove(id)
    }

    /// Sets (or clears) the label of an admitted member; false if `id` is not one.
    pub fn relabel(&mut self, id: &NodeId, label: Option<String>) -> bool {
        match self.members.get_mut(id) {
            Some(slot) => {
                *slot = label;
                true
            }
            None => false,
        }
    }

    /// The threshold the file sets, if any (`None`: the default rule).
    pub fn threshold(&self) -> Option<u32> {
        self.threshold
    }

    /// Sets the threshold (`None`: the default rule).
    pub fn set_threshold(&mut self, threshold: Option<u32>) {
        self.threshold = threshold;
    }

    /// Whether `id` is admitted.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.members.contains_key(id)
    }

    /// The label given to `id`, if any.
    pub fn label(&self, id: &NodeId) -> Option<&str> {
        self.members.get(id).and_then(|label| label.as_deref())
    }

    /// Number of admitted members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether nobody is admitted.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Admitted members in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, Option<&str>)> {
        self.members
            .iter()
            .map(|(id, label)| (id, label.as_deref()))
    }

    /// Reads a roster file.
    pub fn load(path: &Path) -> Result<Self, RosterError> {
        let io_error = |error| RosterError::Io {
            path: path.to_path_buf(),
            error,
        };
        let metadata = fs::metadata(path).map_err(io_error)?;
        if metadata.len() > MAX_ROSTER_FILE_BYTES {
            return Err(RosterError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        Self::from_toml(&fs::read_to_string(path).map_err(io_error)?)
    }

    /// Parses roster TOML.
    pub fn from_toml(text: &str) -> Result<Self, RosterError> {
        let file: RosterFile =
            toml::from_str(text).map_err(|error| RosterError::Syntax(error.to_string()))?;
        let mut roster = Self::new();
        roster.threshold = file.threshold;
        for (index, entry) in file.member.into_iter().enumerate() {
            let position = index + 1;
            let label = entry
                .label
                .as_ref()
                .map(|label| format!(" ({label})"))
                .unwrap_or_default();
            let id: NodeId = entry.id.parse().map_err(|error| RosterError::InvalidId {
                position,
                label: label.clone(),
                reason: format!("{error}"),
            })?;
            id.verifying_key().map_err(|reason| RosterError::WeakKey {
                position,
                label: label.clone(),
                reason,
            })?;
            if !roster.insert(id, entry.label) {
                return Err(RosterError::Duplicate {
                    position,
                    label,
                    id,
                });
            }
        }
        Ok(roster)
    }

    /// The roster as TOML, in id order.
    pub fn to_toml(&self) -> String {
        let file = RosterFile {
            threshold: self.threshold,
            member: self
                .members
                .iter()
                .map(|(id, label)| MemberEntry {
                    id: id.to_string(),
                    label: label.clone(),
                })
                .collect(),
        };
        let body = toml::to_string(&file).unwrap_or_default();
        format!("# tidings federation roster: the node ids admitted to this federation\n\n{body}")
    }
}

impl FromIterator<NodeId> for Roster {
    fn from_iter<T: IntoIterator<Item = NodeId>>(iter: T) -> Self {
        let mut roster = Self::new();
        for id in iter {
            roster.insert(id, None);
        }
        roster
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;

    fn id(seed: u8) -> NodeId {
        Identity::from_seed(&[seed; 32]).node_id()
    }

    #[test]
    fn round_trip_through_toml() {
        let mut roster = Roster::new();
        roster.insert(id(1), Some("alice".into()));
        roster.insert(id(2), None);
        let parsed = Roster::from_toml(&roster.to_toml()).unwrap();
        assert_eq!(parsed, roster);
        assert_eq!(parsed.label(&id(1)), Some("alice"));
        assert!(parsed.contains(&id(2)));
        assert!(!parsed.contains(&id(3)));
        roster.set_threshold(Some(2));
        let parsed = Roster::from_toml(&roster.to_toml()).unwrap();
        assert_eq!(parsed.threshold(), Some(2));
    }

    #[test]
    fn errors_name_the_member() {
        let text = format!(
            "[[member]]\nid = \"{}\"\n[[member]]\nid = \"nope\"\nlabel = \"bob\"\n",
            id(1)
        );
        let error = Roster::from_toml(&text).unwrap_err().to_string();
        assert!(error.contains("#2 (bob)"), "{error}");

        let dup = format!(
            "[[member]]\nid = \"{0}\"\n[[member]]\nid = \"{0}\"\n",
            id(1)
        );
        assert!(matches!(
            Roster::from_toml(&dup),
            Err(RosterError::Duplicate { position: 2, .. })
        ));

        let weak = format!("[[member]]\nid = \"{}\"\n", NodeId::from_bytes([0; 32]));
        assert!(matches!(
            Roster::from_toml(&weak),
            Err(RosterError::WeakKey { .. })
        ));
        assert!(matches!(
            Roster::from_toml("member = 3"),
            Err(RosterError::Syntax(_))
        ));
        assert!(matches!(
            Roster::from_toml("[[member]]\nid = \"x\"\nextra = 1\n"),
            Err(RosterError::Syntax(_))
        ));
    }
}
