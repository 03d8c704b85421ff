//! The local HTTP API (axum): what users and scripts touch on a running node.
//!
//! It listens on 127.0.0.1 by default: it can sign as the node, so any other address
//! requires a token, checked on every request (`Authorization: Bearer TOKEN`).
//! Without a token, requests must name this machine in `Host` and carry no
//! foreign `Origin` (see [`guard`]): a web page cannot use it. At most
//! [`MAX_WATCH_STREAMS`] watch streams are open at once.
//! Errors are RFC 7807 problem documents (`application/problem+json`), wrong
//! methods and malformed query strings included. Node ids in paths and queries
//! may be roster labels or unique prefixes, record ids unique prefixes (see
//! [`ids`]); times are Unix milliseconds or RFC 3339.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /` | the web page (see [`page`]): directory, members, provenance, live changes |
//! | `GET /v1/openapi.json` | this API in OpenAPI 3.1 (see [`openapi`]) |
//! | `GET /v1/health` | node id, records held, peers connected |
//! | `GET /v1/specialists?capability=&name=` | lookup |
//! | `POST /v1/specialists` | announce (JSON specialist); 201 with the new record |
//! | `DELETE /v1/specialists/{name}` | withdraw |
//! | `GET /v1/specialists?live=true` | only specialists of origins connected now (idle ones are dialled first) |
//! | `POST /v1/leave` | withdraw every specialist in one record, then stop the node |
//! | `GET /v1/members` | the roster as this node sees it: connected, last heard |
//! | `GET /v1/roster` | the roster chain: epoch, head, threshold, members, applied operations, open proposals, votes, fork |
//! | `GET /v1/roster/pending` | open roster proposals |
//! | `POST /v1/roster/proposals` | propose an operation (JSON: `action` and its fields); 201 |
//! | `POST /v1/roster/proposals/{id}/approve` | approve an open proposal (full id or unique prefix) |
//! | `GET /v1/roster/export` | the chain from its genesis, for `tidings verify` |
//! | `GET /v1/records/{origin}` | an origin's current signed record |
//! | `GET /v1/provenance/{record_id}` | signer, chain position, receipts, relays, quarantine |
//! | `GET /v1/audit?record=&origin=&peer=&kind=&since=&until=&after=&limit=` | audit entries |
//! | `GET /v1/watch` | server-sent events: added, updated, removed, expired, quarantined, left_roster, pardoned; ids `BOOT-N`, resumed after `Last-Event-ID` (a `reset` event when it cannot be) |
//! | `GET /metrics` | Prometheus text |

pub mod answers;
mod guard;
pub mod ids;
mod openapi;
mod page;
mod problem;
mod roster;
mod routes;
mod watch;

use std::net::SocketAddr;

use tokio::sync::oneshot;

use crate::net::node::NodeClient;

pub use problem::{Problem, ProblemDocument};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Watch streams served at once; the next is refused with a problem document.
pub const MAX_WATCH_STREAMS: usize = 256;

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A non-loopback address without a token.
    #[error("the API address {0} is not on loopback: set api_token, or keep the API on 127.0.0.1")]
    TokenRequired(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// A running API server.
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl ApiServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: finishes requests in flight for up to two seconds, then
    /// closes what is left (watch streams never finish on their own).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Serves the API for `client` on `addr`.
pub async fn serve(
    client: NodeClient,
    addr: SocketAddr,
    token: Option<String>,
) -> Result<ApiServer, ApiError> {
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(ApiError::TokenRequired(addr));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| ApiError::Bind { addr, error })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let watch = watch::Watch::start(client.clone());
    let router = routes::router(routes::AppState {
        client,
        token,
        watch,
        bound,
        watchers: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_WATCH_STREAMS)),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "the API server stopped");
        }
    });
    tracing::info!(addr = %bound, "API listening");
    Ok(ApiServer {
        addr: bound,
        stop: Some(stop),
        task,
    })
}
