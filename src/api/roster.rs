//! The roster endpoints: the chain and members, open proposals, proposing,
//! approving, and the export `tidings verify` checks offline.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemars::JsonSchema;
use serde::Deserialize;
use tidings_keys::{NodeId, Signature};

use super::answers::{OutcomeStatus, PendingAnswer, RosterOutcome};
use super::problem::Problem;
use super::routes::AppState;
use crate::net::node::{NodeError, OpView, RosterView};
use crate::proto::limits::{
    DEFAULT_PROPOSAL_LIFETIME_MS, MAX_PROPOSAL_LIFETIME_MS, RECOVERY_SEQ_GAP,
};
use crate::proto::roster::{Action, Received, RosterError, RosterHash, SignError, Threshold};

/// A roster operation to propose: `action` and the fields it needs. add:
/// `member`, `label`, `countersignature`; remove: `member`; rotate: `from`,
/// `to`, `countersignature`; threshold: `threshold`; relabel: `member`,
/// `label`; pardon: `origin`, `above_seq`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ProposalBody {
    /// What the operation does.
    #[schemars(extend("enum" = ["add", "remove", "rotate", "threshold", "relabel", "pardon"]))]
    action: String,
    /// The member to add, remove or relabel.
    member: Option<NodeId>,
    /// Its roster label (add, relabel; none removes the label).
    label: Option<String>,
    /// The key a rotation retires.
    from: Option<NodeId>,
    /// The key a rotation brings in.
    to: Option<NodeId>,
    /// The quarantined origin to pardon.
    origin: Option<NodeId>,
    /// The highest seq of the proof against it that the pardon covers.
    above_seq: Option<u64>,
    /// The new threshold: `two-thirds` or a number of approvals.
    #[schemars(with = "Option<ThresholdInput>")]
    threshold: Option<serde_json::Value>,
    /// The new key's countersignature (hex), for add and rotate.
    countersignature: Option<String>,
    /// How long the proposal stays open, in seconds (default one day).
    lifetime_s: Option<u64>,
}

/// How a threshold is written in a proposal: `two-thirds` or a number.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Only its schema is used: the body reads a JSON value.
enum ThresholdInput {
    /// `two-thirds`.
    Rule(String),
    /// A number of approvals.
    Count(u64),
}

fn missing(field: &str, action: &str) -> Problem {
    Problem::bad_request(
        "invalid-proposal",
        format!("a {action} proposal needs \"{field}\""),
    )
}

fn sign_problem(error: NodeError) -> Problem {
    match error {
        NodeError::Sign(error) => {
            let (status, title) = match &error {
                SignError::NoSuchProposal(_) => (StatusCode::NOT_FOUND, "no-such-proposal"),
                SignError::AlreadySigned { .. } => {
                    (StatusCode::CONFLICT, "already-signed-this-epoch")
                }
                SignError::AlreadyApproved(_) => (StatusCode::CONFLICT, "already-approved"),
                SignError::NotAMember => (StatusCode::FORBIDDEN, "not-a-member"),
                SignError::Frozen(_) => (StatusCode::CONFLICT, "roster-forked"),
                SignError::PoolFull => (StatusCode::TOO_MANY_REQUESTS, "too-many-proposals"),
                SignError::Invalid(RosterError::Expired { .. }) => {
                    (StatusCode::GONE, "proposal-expired")
                }
                SignError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-proposal"),
            };
            Problem::new(status, title, error.to_string())
        }
        other => Problem::internal(other.to_string()),
    }
}

fn outcome(op: &crate::proto::roster::SignedOp, received: &Received) -> RosterOutcome {
    let held = op.approvals.len();
    let (status, approvals, needed) = match received {
        Received::Applied(_) => (OutcomeStatus::Applied, held, held),
        Received::Proposal {
            approvals, needed, ..
        } => (OutcomeStatus::Pending, *approvals, *needed),
        Received::Refused(_) => (OutcomeStatus::Refused, held, 0),
        Received::Frozen | Received::Forked(_) => (OutcomeStatus::RosterForked, held, 0),
        _ => (OutcomeStatus::NotApplied, held, 0),
    };
    RosterOutcome {
        status,
        approvals,
        needed,
        operation: OpView::of(op),
    }
}

/// The node's roster view.
async fn view(state: &AppState) -> Result<RosterView, Problem> {
    state
        .client
        .roster()
        .await
        .map_err(|e| Problem::internal(e.to_string()))
}

pub(super) async fn roster(State(state): State<AppState>) -> Result<Json<RosterView>, Problem> {
    Ok(Json(view(&state).await?))
}

pub(super) async fn pending(State(state): State<AppState>) -> Result<Json<PendingAnswer>, Problem> {
    let view = view(&state).await?;
    Ok(Json(PendingAnswer {
        epoch: view.epoch,
        needed: view.needed,
        pending: view.pending,
    }))
}

pub(super) async fn export(State(state): State<AppState>) -> Result<Response, Problem> {
    let text = state
        .client
        .roster_export()
        .await
        .map_err(|e| Problem::internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

pub(super) async fn propose(
    State(state): State<AppState>,
    body: Result<Json<ProposalBody>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(body) =
        body.map_err(|rejection| Problem::bad_request("invalid-proposal", rejection.body_text()))?;
    let name = body.action.as_str();
    let label = body.label.clone().filter(|label| !label.is_empty());
    let action = match name {
        "add" => Action::Add {
            member: body.member.ok_or_else(|| missing("member", name))?,
            label,
        },
        "remove" => Action::Remove {
            member: body.member.ok_or_else(|| missing("member", name))?,
        },
        "rotate" => {
            let from = body.from.unwrap_or_else(|| state.client.node_id());
            if view(&state)
                .await?
                .quarantined
                .iter()
                .any(|(id, _)| *id == from)
            {
                return Err(Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "quarantined",
                    format!("{from} is quarantined: a rotation would lift the quarantine without a pardon; propose a pardon first"),
                ));
            }
            Action::Rotate {
                from,
                to: body.to.ok_or_else(|| missing("to", name))?,
            }
        }
        "threshold" => {
            let value = body
                .threshold
                .as_ref()
                .ok_or_else(|| missing("threshold", name))?;
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            Action::Threshold(
                text.parse::<Threshold>()
                    .map_err(|error| Problem::bad_request("invalid-proposal", error))?,
            )
        }
        "relabel" => Action::Relabel {
            member: body.member.ok_or_else(|| missing("member", name))?,
            label,
        },
        "pardon" => {
            let origin = body
                .origin
                .or(body.member)
                .ok_or_else(|| missing("origin", name))?;
            let above_seq = match body.above_seq {
                Some(seq) => seq,
                None => {
                    // Above the proof by the recovery gap: any other fork the
                    // origin signed before the pardon (a copied node folder
                    // runs on for a while) is covered too, and its chain
                    // restarts above all of them.
                    view(&state)
                        .await?
                        .quarantined
                        .iter()
                        .find(|(id, _)| *id == origin)
                        .map(|(_, seq)| seq.saturating_add(RECOVERY_SEQ_GAP))
                        .ok_or_else(|| {
                            Problem::new(
                                StatusCode::UNPROCESSABLE_ENTITY,
                                "not-quarantined",
                                format!("{origin} is not quarantined at this node: give above_seq, the highest seq of the proof against it"),
                            )
                        })?
                }
            };
            Action::Pardon { origin, above_seq }
        }
        other => {
            return Err(Problem::bad_request(
                "invalid-proposal",
                format!(
                "unknown action {other:?}: one of add, remove, rotate, threshold, relabel, pardon"
            ),
            ))
        }
    };
    let countersignature = match &body.countersignature {
        None => None,
        Some(text) => Some(Signature(
            tidings_keys::hex::decode_exact::<64>(text.trim()).map_err(|error| {
                Problem::bad_request(
                    "invalid-countersignature",
                    format!("countersignature: {error}"),
                )
            })?,
        )),
    };
    if action.new_key().is_some() && countersignature.is_none() {
        return Err(Problem::bad_request(
            "invalid-proposal",
            format!("a {name} proposal needs the new key's countersignature (tidings roster countersign)"),
        ));
    }
    let lifetime_ms = body
        .lifetime_s
        .map_or(DEFAULT_PROPOSAL_LIFETIME_MS, |s| s.saturating_mul(1000));
    if lifetime_ms == 0 || lifetime_ms > MAX_PROPOSAL_LIFETIME_MS {
        return Err(Problem::bad_request(
            "invalid-proposal",
            "lifetime_s is between 1 second and seven days",
        ));
    }
    let (op, received) = state
        .client
        .propose(action, countersignature, lifetime_ms)
        .await
        .map_err(sign_problem)?;
    Ok((StatusCode::CREATED, Json(outcome(&op, &received))).into_response())
}

pub(super) async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RosterOutcome>, Problem> {
    let id = resolve(&state, &id).await?;
    let answer = state.client.approve(id).await;
    if let Err(NodeError::Sign(SignError::NoSuchProposal(_))) = &answer {
        if let Some(op) = view(&state).await?.chain.iter().find(|op| op.id == id) {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "already-applied",
                format!(
                    "operation {id} was applied at epoch {}: nothing left to approve",
                    op.epoch
                ),
            ));
        }
    }
    let (op, received) = answer.map_err(sign_problem)?;
    Ok(Json(outcome(&op, &received)))
}

/// A proposal id, in full or as a unique prefix of an open proposal's id.
async fn resolve(state: &AppState, text: &str) -> Result<RosterHash, Problem> {
    let text = text.trim().to_ascii_lowercase();
    if let Ok(id) = text.parse::<RosterHash>() {
        return Ok(id);
    }
    // A short prefix is cheap to collide with on purpose: at least 12 digits.
    if text.len() < 12 || !text.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Problem::bad_request(
            "invalid-proposal-id",
            format!("{text:?} is not a proposal id (64 hex characters, or a unique prefix of at least 12)"),
        ));
    }
    let view = view(state).await?;
    let matching: Vec<RosterHash> = view
        .pending
        .iter()
        .map(|p| p.op.id)
        .filter(|id| id.to_string().starts_with(&text))
        .collect();
    match matching.as_slice() {
        [one] => Ok(*one),
        [] => Err(Problem::not_found(
            "no-such-proposal",
            format!("no open proposal starts with {text}"),
        )),
        _ => Err(Problem::bad_request(
            "ambiguous-proposal-id",
            format!("several open proposals start with {text}"),
        )),
    }
}
