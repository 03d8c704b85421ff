//! The handlers.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tidings_audit::EntryKind;

use super::answers::{
    AuditAnswer, HealthAnswer, MembersAnswer, ProvenanceAnswer, Published, RecordAnswer,
    SpecialistsAnswer, Status,
};
use super::problem::Problem;
use super::watch::Watch;
use super::MAX_BODY_BYTES;
use crate::net::node::{Lookup, NodeClient, NodeError, Signing, LATENCY_BUCKETS_MS};
use crate::proto::{PublishError, RecordError, Specialist};

#[derive(Clone)]
pub(super) struct AppState {
    pub(super) client: NodeClient,
    pub(super) token: Option<String>,
    pub(super) watch: Watch,
    /// The address the API listens on: what a tokenless request's `Host` names.
    pub(super) bound: std::net::SocketAddr,
    /// Watch streams that may still open.
    pub(super) watchers: std::sync::Arc<tokio::sync::Semaphore>,
}

pub(super) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(super::page::index))
        .route("/ui/app.js", get(super::page::script))
        .route("/ui/app.css", get(super::page::style))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/health", get(health))
        .route("/v1/specialists", get(specialists).post(announce))
        .route("/v1/specialists/{name}", delete(withdraw))
        .route("/v1/members", get(members))
        .route("/v1/leave", post(leave))
        .route("/v1/roster", get(super::roster::roster))
        .route("/v1/roster/pending", get(super::roster::pending))
        .route("/v1/roster/proposals", post(super::roster::propose))
        .route(
            "/v1/roster/proposals/{id}/approve",
            post(super::roster::approve),
        )
        .route("/v1/roster/export", get(super::roster::export))
        .route("/v1/records/{origin}", get(record))
        .route("/v1/provenance/{record}", get(provenance))
        .route("/v1/audit", get(audit))
        .route("/v1/watch", get(watch))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            Problem::not_found("no-such-endpoint", "see the README for the API's endpoints")
        })
        .method_not_allowed_fallback(|request: Request| async move {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                format!(
                    "{} does not answer {} (see the README for the API's endpoints)",
                    request.uri().path(),
                    request.method()
                ),
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Equal-time comparison, so the token does not leak through timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let page = super::page::PATHS.contains(&request.uri().path());
    if let Some(token) = state.token.as_ref().filter(|_| !page) {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        if !presented.is_some_and(|presented| same(presented.as_bytes(), token.as_bytes())) {
            return Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this API needs `Authorization: Bearer <api_token>`",
            )
            .into_response();
        }
    } else if state.token.is_some() {
        // The page itself, which needs no token.
    } else if let Err(detail) = super::guard::check(request.headers(), state.bound) {
        return Problem::new(StatusCode::FORBIDDEN, "foreign-host", detail).into_response();
    }
    next.run(request).await
}

async fn openapi() -> Json<serde_json::Value> {
    Json(super::openapi::document())
}

fn stopped(error: NodeError) -> Problem {
    Problem::internal(error.to_string())
}

async fn health(State(state): State<AppState>) -> Result<Json<HealthAnswer>, Problem> {
    let stats = state.client.stats().await.map_err(stopped)?;
    let health = state.client.health();
    Ok(Json(HealthAnswer {
        status: Status::of(&health),
        node: state.client.node_id(),
        federation: state.client.federation(),
        records: stats.records,
        peers_connected: stats.connections,
        health,
    }))
}

#[derive(Debug, Deserialize)]
struct SpecialistQuery {
    capability: Option<String>,
    name: Option<String>,
    #[serde(default)]
    live: bool,
}

async fn specialists(
    State(state): State<AppState>,
    query: Result<Query<SpecialistQuery>, QueryRejection>,
) -> Result<Json<SpecialistsAnswer>, Problem> {
    let Query(query) = query.map_err(rejected_query)?;
    let found = state
        .client
        .lookup(Lookup {
            capability: query.capability,
            name: query.name,
            live: query.live,
        })
        .await
        .map_err(stopped)?;
    Ok(Json(SpecialistsAnswer { specialists: found }))
}

fn rejected_query(rejection: QueryRejection) -> Problem {
    Problem::bad_request("invalid-query", rejection.body_text())
}

fn rejected_path(rejection: PathRejection) -> Problem {
    Problem::bad_request("invalid-path", rejection.body_text())
}

fn rejected_body(rejection: JsonRejection) -> Problem {
    let status = rejection.status();
    let title = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "body-too-large"
    } else {
        "invalid-body"
    };
    Problem::new(status, title, rejection.body_text())
}

fn publish_problem(error: NodeError) -> Problem {
    match error {
        NodeError::Publish(PublishError::Invalid(RecordError::Malformed(error))) => {
            Problem::bad_request("invalid-specialist", error.to_string())
        }
        NodeError::Publish(PublishError::UnknownSpecialist(name)) => Problem::not_found(
            "unknown-specialist",
            format!("this node announces no specialist named {name:?}"),
        ),
        NodeError::Publish(PublishError::RateLimited) => Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            PublishError::RateLimited.to_string(),
        )
        .retry_after(5),
        NodeError::Publish(PublishError::Recovering) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "recovering",
            PublishError::Recovering.to_string(),
        )
        .retry_after(2),
        NodeError::Publish(error @ PublishError::Halted(_)) => {
            Problem::new(StatusCode::CONFLICT, "halted", error.to_string())
        }
        NodeError::Publish(error) => {
            Problem::new(StatusCode::CONFLICT, "refused", error.to_string())
        }
        error @ NodeError::Configured(_) => Problem::new(
            StatusCode::CONFLICT,
            "configured-specialist",
            error.to_string(),
        ),
        other => stopped(other),
    }
}

async fn announce(
    State(state): State<AppState>,
    body: Result<Json<Specialist>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(mut specialist) = body.map_err(rejected_body)?;
    specialist.capabilities.sort();
    specialist.capabilities.dedup();
    if state.client.is_configured(&specialist.name).await {
        return Err(publish_problem(NodeError::Configured(specialist.name)));
    }
    let record = state
        .client
        .announce(specialist)
        .await
        .map_err(publish_problem)?;
    Ok((StatusCode::CREATED, Json(Published::of(&record))).into_response())
}

async fn withdraw(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Published>, Problem> {
    let Path(name) = name.map_err(rejected_path)?;
    if state.client.is_configured(&name).await {
        return Err(publish_problem(NodeError::Configured(name)));
    }
    let record = state
        .client
        .withdraw(&name)
        .await
        .map_err(publish_problem)?;
    Ok(Json(Published::of(&record)))
}

/// Leaves the directory: a record that withdraws every specialist, then the
/// node stops.
async fn leave(State(state): State<AppState>) -> Result<Json<Published>, Problem> {
    let record = state.client.leave().await.map_err(publish_problem)?;
    Ok(Json(Published {
        stopping: true,
        ..Published::of(&record)
    }))
}

async fn members(State(state): State<AppState>) -> Result<Json<MembersAnswer>, Problem> {
    let members = state.client.members().await.map_err(stopped)?;
    Ok(Json(MembersAnswer { members }))
}

/// A time: Unix milliseconds, or RFC 3339 (`2026-11-22T10:00:00Z`).
fn parse_time(text: &str) -> Result<u64, Problem> {
    crate::utc::parse_time_ms(text).ok_or_else(|| {
        Problem::bad_request(
            "invalid-time",
            format!("{text:?} is neither Unix milliseconds nor an RFC 3339 time such as 2026-11-22T10:00:00Z"),
        )
    })
}

async fn record(
    State(state): State<AppState>,
    origin: Result<Path<String>, PathRejection>,
) -> Result<Json<RecordAnswer>, Problem> {
    let Path(origin) = origin.map_err(rejected_path)?;
    let origin = super::ids::node(&state.client, &origin).await?;
    let record = state.client.record(origin).await.map_err(stopped)?;
    let record = record.ok_or_else(|| {
        Problem::not_found("unknown-origin", format!("no current record of {origin}"))
    })?;
    Ok(Json(RecordAnswer::of(&record)))
}

async fn provenance(
    State(state): State<AppState>,
    record: Result<Path<String>, PathRejection>,
) -> Result<Json<ProvenanceAnswer>, Problem> {
    let Path(record) = record.map_err(rejected_path)?;
    let key = super::ids::record(&state.client, &record).await?;
    let client = state.client.clone();
    let trace = tokio::task::spawn_blocking(move || -> Result<_, Problem> {
        let log = client.audit_log().map_err(stopped)?;
        crate::trace::trace(&log, key).map_err(|error| Problem::internal(error.to_string()))
    })
    .await
    .map_err(|error| Problem::internal(error.to_string()))??;
    let trace = trace.ok_or_else(|| {
        Problem::not_found(
            "unknown-record",
            format!("record {key} is not in this node's audit log"),
        )
    })?;
    let members = state.client.members().await.map_err(stopped)?;
    let origin = trace.origin;
    let member = members.iter().find(|member| Some(member.id) == origin);
    let current = member
        .and_then(|member| member.record)
        .map(|id| id.0 == key.0);
    Ok(Json(ProvenanceAnswer {
        trace,
        current: current.unwrap_or(false),
        origin_quarantined: member.is_some_and(|member| member.quarantined),
        origin_label: member.and_then(|member| member.label.clone()),
    }))
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    record: Option<String>,
    origin: Option<String>,
    peer: Option<String>,
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
}

async fn audit(
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditAnswer>, Problem> {
    let Query(query) = query.map_err(rejected_query)?;
    let record = match query.record.as_deref() {
        Some(text) => Some(super::ids::record(&state.client, text).await?),
        None => None,
    };
    let origin = match query.origin.as_deref() {
        Some(text) => Some(super::ids::node(&state.client, text).await?),
        None => None,
    };
    let peer = match query.peer.as_deref() {
        Some(text) => Some(super::ids::node(&state.client, text).await?),
        None => None,
    };
    let filter = tidings_audit::Query {
        record,
        origin,
        peer,
        kind: query
            .kind
            .as_deref()
            .map(|kind| {
                kind.parse::<EntryKind>()
                    .map_err(|error| Problem::bad_request("invalid-kind", error))
            })
            .transpose()?,
        since_ms: query.since.as_deref().map(parse_time).transpose()?,
        until_ms: query.until.as_deref().map(parse_time).transpose()?,
        after_index: query.after.unwrap_or(0),
        limit: query.limit.unwrap_or(100).min(10_000),
    };
    let client = state.client.clone();
    let entries = tokio::task::spawn_blocking(move || -> Result<_, Problem> {
        let log = client.audit_log().map_err(stopped)?;
        log.query(&filter)
            .map_err(|error| Problem::internal(error.to_string()))
    })
    .await
    .map_err(|error| Problem::internal(error.to_string()))??;
    Ok(Json(AuditAnswer { entries }))
}

async fn watch(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>>, Problem> {
    // The permit lives as long as the stream: it is returned when the client
    // goes away.
    let permit = state.watchers.clone().try_acquire_owned().map_err(|_| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too-many-watchers",
            format!(
                "{} watch streams are open, the most this node serves; close one or try later",
                super::MAX_WATCH_STREAMS
            ),
        )
        .retry_after(15)
    })?;
    let last_seen = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty());
    let cursor = state.watch.resume(last_seen);
    let stream =
        futures_util::stream::unfold((cursor, permit), |(mut cursor, permit)| async move {
            let numbered = cursor.next().await?;
            let event = Event::default()
                .id(numbered.id)
                .event(numbered.event.event.as_str())
                .json_data(&numbered.event)
                .unwrap_or_default();
            Some((Ok(event), (cursor, permit)))
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn metrics(State(state): State<AppState>) -> Result<Response, Problem> {
    let stats = state.client.stats().await.map_err(stopped)?;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
    };
    metric(
        "tidings_records",
        "gauge",
        "Records held in the directory.",
        vec![format!("tidings_records {}", stats.records)],
    );
    metric(
        "tidings_quarantined_origins",
        "gauge",
        "Origins quarantined for equivocation.",
        vec![format!("tidings_quarantined_origins {}", stats.quarantined)],
    );
    metric(
        "tidings_verdicts_total",
        "counter",
        "Verdicts on received records, by kind.",
        stats
            .verdicts
            .iter()
            .map(|(kind, count)| format!("tidings_verdicts_total{{kind=\"{kind}\"}} {count}"))
            .collect(),
    );
    metric(
        "tidings_messages_sent_total",
        "counter",
        "Messages handed to the send queues, by kind (push, have, graft, want, prune, records, sync, ...); frames a full queue dropped are counted in tidings_send_queue_dropped_total.",
        stats
            .messages_sent
            .iter()
            .map(|(kind, count)| format!("tidings_messages_sent_total{{kind=\"{kind}\"}} {count}"))
            .collect(),
    );
    metric(
        "tidings_peers_connected",
        "gauge",
        "Open peer connections.",
        vec![format!("tidings_peers_connected {}", stats.connections)],
    );
    metric(
        "tidings_bytes_sent_total",
        "counter",
        "Frame bytes sent to peers.",
        vec![format!("tidings_bytes_sent_total {}", stats.bytes_sent)],
    );
    metric(
        "tidings_bytes_received_total",
        "counter",
        "Frame bytes received from peers.",
        vec![format!(
            "tidings_bytes_received_total {}",
            stats.bytes_received
        )],
    );
    metric(
        "tidings_exchanges_total",
        "counter",
        "Gossip exchanges opened.",
        vec![format!("tidings_exchanges_total {}", stats.exchanges)],
    );
    metric(
        "tidings_spread_links",
        "gauge",
        "Neighbour links new records spread along: eager (pushed in full) and lazy (announced).",
        vec![
            format!("tidings_spread_links{{kind=\"eager\"}} {}", stats.links.0),
            format!("tidings_spread_links{{kind=\"lazy\"}} {}", stats.links.1),
        ],
    );
    metric(
        "tidings_grafts_total",
        "counter",
        "Announced records asked of their announcer because the eager path had not brought them in time.",
        vec![format!("tidings_grafts_total {}", stats.grafts)],
    );
    metric(
        "tidings_pushes_pruned_total",
        "counter",
        "Pushes that brought only records another neighbour had brought, answered with a prune.",
        vec![format!(
            "tidings_pushes_pruned_total {}",
            stats.pushes_pruned
        )],
    );
    let mut cumulative = 0;
    let mut lines = Vec::new();
    for (index, bound) in LATENCY_BUCKETS_MS.iter().enumerate() {
        cumulative += stats.latency_buckets.get(index).copied().unwrap_or(0);
        lines.push(format!(
            "tidings_exchange_latency_seconds_bucket{{le=\"{}\"}} {cumulative}",
            *bound as f64 / 1000.0
        ));
    }
    cumulative += stats.latency_buckets.last().copied().unwrap_or(0);
    lines.push(format!(
        "tidings_exchange_latency_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
    ));
    lines.push(format!(
        "tidings_exchange_latency_seconds_sum {}",
        stats.latency_sum_seconds
    ));
    lines.push(format!(
        "tidings_exchange_latency_seconds_count {cumulative}"
    ));
    metric(
        "tidings_exchange_latency_seconds",
        "histogram",
        "Time from opening an exchange to the peer's first answer.",
        lines,
    );
    metric(
        "tidings_audit_entries_total",
        "counter",
        "Audit log entries written.",
        vec![format!(
            "tidings_audit_entries_total {}",
            stats.audit_entries
        )],
    );
    metric(
        "tidings_audit_lag",
        "gauge",
        "Audit entries queued but not yet written.",
        vec![format!("tidings_audit_lag {}", stats.audit_lag)],
    );
    metric(
        "tidings_own_records_persisted_total",
        "counter",
        "Records this node signed (or took back) and made durable before anything revealed them.",
        vec![format!(
            "tidings_own_records_persisted_total {}",
            stats.persisted
        )],
    );
    metric(
        "tidings_own_record_persist_seconds_total",
        "counter",
        "Time spent syncing the store and the audit log for them.",
        vec![format!(
            "tidings_own_record_persist_seconds_total {}",
            stats.persist_seconds
        )],
    );
    metric(
        "tidings_inbox_bytes",
        "gauge",
        "Bytes of received frames waiting for the node.",
        vec![format!("tidings_inbox_bytes {}", stats.inbox_bytes)],
    );
    metric(
        "tidings_send_queue_bytes",
        "gauge",
        "Bytes queued for peers and not yet handed to QUIC.",
        vec![format!(
            "tidings_send_queue_bytes {}",
            stats.send_queue_bytes
        )],
    );
    metric(
        "tidings_send_queue_dropped_total",
        "counter",
        "Frames not sent because their peer's send queue was full.",
        vec![format!(
            "tidings_send_queue_dropped_total {}",
            stats.send_queue_dropped
        )],
    );
    metric(
        "tidings_frames_over_budget_total",
        "counter",
        "Frames dropped unread because their peer had spent its work budget.",
        vec![format!(
            "tidings_frames_over_budget_total {}",
            stats.frames_over_budget
        )],
    );
    metric(
        "tidings_signature_checks_total",
        "counter",
        "Signatures of received records and proofs checked.",
        vec![format!(
            "tidings_signature_checks_total {}",
            stats.signature_checks
        )],
    );
    let health = state.client.health();
    let flag = |on: bool| u8::from(on);
    metric(
        "tidings_signing",
        "gauge",
        "1 for the node's signing state: ok, recovering (waiting for peers after a lost history) or halted.",
        ["ok", "recovering", "halted"]
            .iter()
            .map(|name| {
                let on = match health.signing {
                    Signing::Ok => *name == "ok",
                    Signing::Recovering => *name == "recovering",
                    Signing::Halted => *name == "halted",
                };
                format!("tidings_signing{{state=\"{name}\"}} {}", flag(on))
            })
            .collect(),
    );
    metric(
        "tidings_foreign_signer",
        "gauge",
        "1 when another process signs with this node's key.",
        vec![format!(
            "tidings_foreign_signer {}",
            flag(health.foreign_signer)
        )],
    );
    metric(
        "tidings_clock_offset_seconds",
        "gauge",
        "Peers' clocks minus this node's (median of recent samples).",
        vec![format!(
            "tidings_clock_offset_seconds {}",
            health.clock_offset_ms.unwrap_or(0) as f64 / 1000.0
        )],
    );
    metric(
        "tidings_clock_offset_warning",
        "gauge",
        "1 when the clock offset is beyond half the tolerated skew.",
        vec![format!(
            "tidings_clock_offset_warning {}",
            flag(health.clock_warning)
        )],
    );
    metric(
        "tidings_wall_clock_step_seconds",
        "gauge",
        "How far the system clock moved from the node's own time since it started.",
        vec![format!(
            "tidings_wall_clock_step_seconds {}",
            health.wall_clock_step_ms as f64 / 1000.0
        )],
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
