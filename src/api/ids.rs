//! Ids as people type them: a full id, a roster label, or a unique prefix of
//! the id as it is printed (as git takes a hash's prefix), so that the short
//! ids in tables and logs can be pasted back.
//!
//! Node ids resolve among the roster's members; record ids among the members'
//! current records and the records whose evidence is in the audit log. A
//! prefix must be at least [`MIN_PREFIX`] characters; one that matches several
//! ids is refused with the candidates named.

use axum::http::StatusCode;
use tidings_audit::RecordKey;
use tidings_keys::NodeId;

use super::problem::Problem;
use crate::net::node::NodeClient;

/// Shortest prefix taken.
pub const MIN_PREFIX: usize = 4;

/// Candidates named when a prefix is ambiguous.
const NAMED: usize = 5;

/// Why a text names no single id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// Neither an id, a label nor a prefix of at least [`MIN_PREFIX`]
    /// characters of the id's alphabet.
    Invalid,
    /// No candidate matches.
    Unknown,
    /// Several match: how many, and the first few.
    Ambiguous(usize, Vec<String>),
}

/// The one candidate, or why not.
pub fn one<T: Copy + ToString>(candidates: &[T]) -> Result<T, IdError> {
    match candidates {
        [one] => Ok(*one),
        [] => Err(IdError::Unknown),
        several => Err(IdError::Ambiguous(
            several.len(),
            several.iter().take(NAMED).map(T::to_string).collect(),
        )),
    }
}

/// The node `text` names among `members` (id and label): a full node id, a
/// label, or a unique prefix of an id.
pub fn node_among<'a>(
    text: &str,
    members: impl IntoIterator<Item = (NodeId, Option<&'a str>)>,
) -> Result<NodeId, IdError> {
    let text = text.trim();
    if let Ok(id) = text.parse::<NodeId>() {
        return Ok(id);
    }
    let members: Vec<(NodeId, Option<&str>)> = members.into_iter().collect();
    let labelled: Vec<NodeId> = members
        .iter()
        .filter(|(_, label)| *label == Some(text))
        .map(|(id, _)| *id)
        .collect();
    if !labelled.is_empty() {
        return one(&labelled);
    }
    let lower = text.to_ascii_lowercase();
    let base32 = |c: u8| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c);
    if text.len() < MIN_PREFIX || !lower.bytes().all(base32) {
        return Err(IdError::Invalid);
    }
    let matching: Vec<NodeId> = members
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| id.to_string().to_ascii_lowercase().starts_with(&lower))
        .collect();
    one(&matching)
}

/// A record named by `text`: its full id, or the lowercase prefix to look up.
pub fn record_text(text: &str) -> Result<Result<RecordKey, String>, IdError> {
    let text = text.trim();
    if let Ok(key) = text.parse::<RecordKey>() {
        return Ok(Ok(key));
    }
    if text.len() < MIN_PREFIX || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(IdError::Invalid);
    }
    Ok(Err(text.to_ascii_lowercase()))
}

/// The API's answer for `error`, about `text` naming a `kind`.
fn problem(kind: &str, text: &str, error: IdError) -> Problem {
    match error {
        IdError::Invalid => Problem::bad_request(
            "invalid-id",
            format!(
                "{text:?} is not a {kind} id, a roster label, or a prefix of at least {MIN_PREFIX} characters"
            ),
        ),
        IdError::Unknown => Problem::not_found(
            "unknown-id",
            format!("no {kind} is named or begins with {text:?}"),
        ),
        IdError::Ambiguous(count, named) => Problem::new(
            StatusCode::BAD_REQUEST,
            "ambiguous-id",
            format!(
                "{text:?} begins {count} {kind} ids ({}{}): give more characters",
                named.join(", "),
                if count > NAMED { ", …" } else { "" }
            ),
        ),
    }
}

/// Picks the one candidate `text` names, by `kind` (for messages).
fn pick<T: Copy + ToString>(kind: &str, text: &str, candidates: &[T]) -> Result<T, Problem> {
    one(candidates).map_err(|error| problem(kind, text, error))
}

/// The node `text` names: a full node id, a member's roster label, or a
/// unique prefix of a member's id.
pub async fn node(client: &NodeClient, text: &str) -> Result<NodeId, Problem> {
    if let Ok(id) = text.trim().parse::<NodeId>() {
        return Ok(id);
    }
    let members = client
        .members()
        .await
        .map_err(|error| Problem::internal(error.to_string()))?;
    let members = members
        .iter()
        .map(|member| (member.id, member.label.as_deref()));
    node_among(text, members).map_err(|error| problem("node", text.trim(), error))
}

/// The record `text` names: a full record id, or a unique prefix of a
/// member's current record or of a record in the audit log.
pub async fn record(client: &NodeClient, text: &str) -> Result<RecordKey, Problem> {
    let text = text.trim();
    let lower = match record_text(text) {
        Ok(Ok(key)) => return Ok(key),
        Ok(Err(lower)) => lower,
        Err(error) => return Err(problem("record", text, error)),
    };
    let members = client
        .members()
        .await
        .map_err(|error| Problem::internal(error.to_string()))?;
    let mut matching: Vec<RecordKey> = members
        .iter()
        .filter_map(|member| member.record)
        .map(|id| RecordKey(id.0))
        .filter(|key| key.to_string().starts_with(&lower))
        .collect();
    let client = client.clone();
    let logged = tokio::task::spawn_blocking(move || -> Result<Vec<RecordKey>, Problem> {
        let log = client
            .audit_log()
            .map_err(|error| Problem::internal(error.to_string()))?;
        log.evidence_with_prefix(&lower, NAMED + 1)
            .map_err(|error| Problem::internal(error.to_string()))
    })
    .await
    .map_err(|error| Problem::internal(error.to_string()))??;
    matching.extend(logged);
    matching.sort_by_key(|key| key.0);
    matching.dedup();
    pick("record", text, &matching)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_candidate_is_taken_none_is_unknown_several_are_named() {
        assert_eq!(pick("record", "ab12", &[7u8]).unwrap(), 7);
        let none = pick::<u8>("record", "ab12", &[]).unwrap_err();
        assert_eq!(none.status, StatusCode::NOT_FOUND);
        let several = pick("node", "abcd", &[1u8, 2, 3, 4, 5, 6, 7]).unwrap_err();
        assert_eq!(several.status, StatusCode::BAD_REQUEST);
        assert_eq!(several.title, "ambiguous-id");
        assert!(several.detail.contains("7 node ids"), "{}", several.detail);
        assert!(
            several.detail.contains("1, 2, 3, 4, 5, …"),
            "{}",
            several.detail
        );
    }
}
