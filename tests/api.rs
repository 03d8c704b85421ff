//! The local HTTP API over a real HTTP client, errors and watch stream included.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{count, eventually, federation};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tidings::api::answers::{
    AuditAnswer, HealthAnswer, MembersAnswer, PendingAnswer, ProvenanceAnswer, Published,
    RecordAnswer, RosterOutcome, SpecialistsAnswer,
};
use tidings::api::{serve, ApiServer};
use tidings::net::node::{NodeHandle, RosterView};
use tidings::proto::roster::Action;

async fn problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

async fn get_json(http: &reqwest::Client, url: String) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// The JSON answer of an empty POST to `url`.
async fn post_json(http: &reqwest::Client, url: String) -> Value {
    http.post(url).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_and_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = federation(dir.path(), 2).await;
    let api_a = serve(nodes[0].client(), "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let api_b = serve(nodes[1].client(), "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let (a, b) = (
        format!("http://{}", api_a.local_addr()),
        format!("http://{}", api_b.local_addr()),
    );
    let http = reqwest::Client::new();

    // Watch node B before anything changes on node A.
    let mut watch = http.get(format!("{b}/v1/watch")).send().await.unwrap();
    assert_eq!(watch.status(), StatusCode::OK);
    assert_eq!(watch.headers()["content-type"], "text/event-stream");

    let health: Value = get_json(&http, format!("{a}/v1/health")).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["node"], nodes[0].node_id().to_string());

    eventually(
        "both nodes hold both records",
        Duration::from_secs(10),
        || async {
            count(&nodes[0], "summarize").await == 2 && count(&nodes[1], "summarize").await == 2
        },
    )
    .await;

    // Announce on A, see it on B through the API and on the watch stream.
    let created = http
        .post(format!("{a}/v1/specialists"))
        .json(&json!({"name": "translator", "capabilities": ["translate", "fr-en"], "endpoint": "https://mt.example/api", "meta": {"model": "small"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let record_id = created["record"].as_str().unwrap().to_string();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(seen.contains("event: added") && seen.contains("translator")) {
        let chunk = tokio::time::timeout_at(deadline, watch.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let found: Value = get_json(&http, format!("{b}/v1/specialists?capability=translate")).await;
    assert_eq!(found["specialists"][0]["specialist"]["name"], "translator");
    assert_eq!(
        found["specialists"][0]["origin"],
        nodes[0].node_id().to_string()
    );
    let by_name: Value = get_json(&http, format!("{b}/v1/specialists?name=agent-1")).await;
    assert_eq!(by_name["specialists"].as_array().unwrap().len(), 1);

    // Members, records, provenance, audit.
    let members: Value = get_json(&http, format!("{b}/v1/members")).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 2);
    let record: Value = get_json(&http, format!("{b}/v1/records/{}", nodes[0].node_id())).await;
    assert_eq!(record["record"], record_id.as_str());
    assert!(record["signed_hex"].as_str().unwrap().len() > 100);
    let provenance: Value = get_json(&http, format!("{b}/v1/provenance/{record_id}")).await;
    assert_eq!(
        provenance["trace"]["evidence"]["signer"],
        nodes[0].node_id().to_string()
    );
    assert_eq!(
        provenance["trace"]["first_receipt"]["peer"],
        nodes[0].node_id().to_string()
    );
    assert_eq!(provenance["current"], true);
    let audit: Value = get_json(
        &http,
        format!("{b}/v1/audit?kind=accepted&record={record_id}"),
    )
    .await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1);

    // Metrics.
    let metrics = http
        .get(format!("{a}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "tidings_records 2",
        "tidings_verdicts_total{kind=\"accepted\"}",
        "tidings_peers_connected",
        "tidings_bytes_sent_total",
        "tidings_exchange_latency_seconds_bucket{le=\"+Inf\"}",
        "tidings_audit_entries_total",
        "tidings_audit_lag",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }

    // Withdraw, and the errors.
    let withdrawn = http
        .delete(format!("{a}/v1/specialists/translator"))
        .send()
        .await
        .unwrap();
    assert_eq!(withdrawn.status(), StatusCode::OK);
    problem(
        http.delete(format!("{a}/v1/specialists/translator"))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    let invalid = http
        .post(format!("{a}/v1/specialists"))
        .json(&json!({"name": "bad name", "endpoint": "https://x.example"}))
        .send()
        .await
        .unwrap();
    let body = problem(invalid, StatusCode::BAD_REQUEST).await;
    assert!(body["detail"].as_str().unwrap().contains("name"), "{body}");
    let unknown_field = http
        .post(format!("{a}/v1/specialists"))
        .json(&json!({"name": "x", "endpoint": "https://x.example", "colour": 1}))
        .send()
        .await
        .unwrap();
    assert!(unknown_field.status().is_client_error());
    let huge = http
        .post(format!("{a}/v1/specialists"))
        .header("content-type", "application/json")
        .body(vec![b' '; 100_000])
        .send()
        .await
        .unwrap();
    problem(huge, StatusCode::PAYLOAD_TOO_LARGE).await;
    problem(
        http.get(format!("{a}/v1/records/not-a-node"))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let stranger = tidings::keys::Identity::from_seed(&[77; 32]).node_id();
    problem(
        http.get(format!("{a}/v1/records/{stranger}"))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        http.get(format!("{a}/v1/provenance/{}", "ab".repeat(32)))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        http.get(format!("{a}/v1/provenance/xyz"))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        http.get(format!("{a}/v1/audit?kind=bogus"))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        http.get(format!("{a}/v1/nothing")).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;

    // Every error is a problem document: bad query strings, wrong methods,
    // wrong content types, bodies of the wrong shape, endpoints that are not
    // http or https, times that are neither milliseconds nor RFC 3339.
    let body = problem(
        http.get(format!("{a}/v1/audit?limit=many"))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["title"], "invalid-query", "{body}");
    problem(
        http.get(format!("{a}/v1/specialists?live=perhaps"))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let body = problem(
        http.put(format!("{a}/v1/members")).send().await.unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("PUT"), "{body}");
    problem(
        http.post(format!("{a}/v1/specialists"))
            .header("content-type", "text/plain")
            .body("name=x")
            .send()
            .await
            .unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    problem(
        http.post(format!("{a}/v1/specialists"))
            .json(&json!({"name": 7}))
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    for endpoint in [
        "file:///etc/passwd",
        "javascript://alert",
        "ftp://x.example",
    ] {
        let body = problem(
            http.post(format!("{a}/v1/specialists"))
                .json(&json!({"name": "x", "endpoint": endpoint}))
                .send()
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(
            body["detail"].as_str().unwrap().contains("http or https"),
            "{endpoint}: {body}"
        );
    }
    let body = problem(
        http.get(format!("{a}/v1/audit?since=yesterday"))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(body["title"], "invalid-time", "{body}");
    let entries = |text: Value| text["entries"].as_array().unwrap().len();
    let all: Value = get_json(&http, format!("{b}/v1/audit?kind=accepted&limit=1000")).await;
    let after_2000: Value = get_json(
        &http,
        format!("{b}/v1/audit?kind=accepted&limit=1000&since=2000-01-01T00:00:00Z"),
    )
    .await;
    let before_2000: Value = get_json(
        &http,
        format!("{b}/v1/audit?kind=accepted&limit=1000&until=1999-12-31T23:00:00-01:00"),
    )
    .await;
    assert!(entries(all.clone()) > 0);
    assert_eq!(entries(after_2000), entries(all));
    assert_eq!(entries(before_2000), 0);

    // Ids as printed: a unique prefix of a node id or a record id works.
    let node_a = nodes[0].node_id().to_string();
    let by_prefix: Value = get_json(&http, format!("{b}/v1/records/{}", &node_a[..10])).await;
    assert_eq!(by_prefix["origin"], node_a.as_str(), "{by_prefix}");
    let current = by_prefix["record"].as_str().unwrap().to_string();
    let traced: Value = get_json(&http, format!("{b}/v1/provenance/{}", &current[..12])).await;
    assert_eq!(traced["trace"]["record"], current.as_str(), "{traced}");
    let logged: Value = get_json(
        &http,
        format!(
            "{b}/v1/audit?record={}&origin={}",
            &record_id[..12],
            &node_a[..10]
        ),
    )
    .await;
    assert!(
        !logged["entries"].as_array().unwrap().is_empty(),
        "{logged}"
    );
    let body = problem(
        http.get(format!("{b}/v1/provenance/{}", "0".repeat(8)))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(body["title"], "unknown-id", "{body}");

    // Reachability beside each entry; a live lookup keeps reachable origins.
    let live: Value = get_json(
        &http,
        format!("{b}/v1/specialists?capability=summarize&live=true"),
    )
    .await;
    let live = live["specialists"].as_array().unwrap();
    assert_eq!(live.len(), 2, "{live:?}");
    assert!(live.iter().all(|found| found["connected"] == true));
    let heard = live
        .iter()
        .find(|found| found["origin"] == nodes[0].node_id().to_string())
        .unwrap();
    assert!(heard["last_heard_ms"].as_u64().is_some(), "{heard}");

    api_a.shutdown().await;
    api_b.shutdown().await;
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

/// One node and its API on loopback (with `token`, if any).
async fn one_node(dir: &std::path::Path, token: Option<&str>) -> (Vec<NodeHandle>, ApiServer) {
    let nodes = federation(dir, 1).await;
    let api = serve(
        nodes[0].client(),
        "127.0.0.1:0".parse().unwrap(),
        token.map(String::from),
    )
    .await
    .unwrap();
    (nodes, api)
}

async fn stop(api: ApiServer, nodes: Vec<NodeHandle>) {
    api.shutdown().await;
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_the_api_and_is_required_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let first = federation(dir.path(), 1).await;
    let refused = serve(first[0].client(), "0.0.0.0:0".parse().unwrap(), None).await;
    assert!(
        refused.is_err(),
        "a non-loopback API without a token is refused"
    );
    for node in first {
        node.shutdown().await.unwrap();
    }
    let (nodes, api) = one_node(dir.path(), Some("s3cret")).await;
    let base = format!("http://{}", api.local_addr());
    let http = reqwest::Client::new();
    problem(
        http.get(format!("{base}/v1/health")).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    problem(
        http.get(format!("{base}/v1/health"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let ok = http
        .get(format!("{base}/v1/health"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    // The web page's files carry no data: served without the token, under a
    // policy that allows only this origin's own script and requests.
    for (path, kind) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let page = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        let headers = page.headers();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"));
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    problem(
        http.get(format!("{base}/ui/other.js"))
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    stop(api, nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_web_pages_and_foreign_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, api) = one_node(dir.path(), None).await;
    let addr = api.local_addr();
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let announce =
        json!({"name": "rebound", "capabilities": ["x"], "endpoint": "https://x.example/"});

    // DNS rebinding: the page's name resolves to 127.0.0.1, so Host carries it.
    let post = |header: &'static str, value: String| {
        http.post(format!("{base}/v1/specialists"))
            .header(header, value)
            .json(&announce)
            .send()
    };
    let rebound = post("host", format!("evil.example:{}", addr.port()))
        .await
        .unwrap();
    let body = problem(rebound, StatusCode::FORBIDDEN).await;
    assert_eq!(body["title"], "foreign-host");
    assert!(body["detail"].as_str().unwrap().contains("evil.example"));
    // A page elsewhere posting across origins.
    let cross = post("origin", "http://evil.example".into()).await.unwrap();
    problem(cross, StatusCode::FORBIDDEN).await;
    let found: Value = get_json(&http, format!("{base}/v1/specialists?name=rebound")).await;
    assert_eq!(found["specialists"], json!([]), "nothing was signed");
    // Local clients pass, by address or by localhost.
    let by_name = http
        .get(format!("http://localhost:{}/v1/health", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(by_name.status(), StatusCode::OK);
    let signed = post("origin", format!("http://127.0.0.1:{}", addr.port()))
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::CREATED);
    stop(api, nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_stream_after_the_last_allowed_is_refused() {
    use tidings::api::MAX_WATCH_STREAMS;
    let dir = tempfile::tempdir().unwrap();
    let (nodes, api) = one_node(dir.path(), None).await;
    let url = format!("http://{}/v1/watch", api.local_addr());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut open = Vec::new();
    for _ in 0..MAX_WATCH_STREAMS {
        let watching = http.get(&url).send().await.unwrap();
        assert_eq!(watching.status(), StatusCode::OK);
        open.push(watching);
    }
    let refused = http.get(&url).send().await.unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    let body = problem(refused, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["title"], "too-many-watchers");
    // A closed stream makes room.
    drop(open.pop());
    eventually(
        "a closed watch stream makes room",
        Duration::from_secs(5),
        || async { http.get(&url).send().await.unwrap().status() == StatusCode::OK },
    )
    .await;
    drop(open);
    stop(api, nodes).await;
}

/// Server-sent events read off a response, one at a time.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

/// One server-sent event: its id, type and JSON data.
#[derive(Debug)]
struct Sse {
    id: String,
    event: String,
    data: Value,
}

impl Events {
    async fn open(http: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> Self {
        let mut request = http.get(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments such as keep-alives skipped), within 10 s.
    async fn next(&mut self) -> Sse {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|line| line.strip_prefix(name))
                        .map(|value| value.trim_start().to_string())
                };
                if let (Some(id), Some(event), Some(data)) =
                    (field("id:"), field("event:"), field("data:"))
                {
                    let data = serde_json::from_str(&data).unwrap();
                    return Sse { id, event, data };
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .expect("the stream stays open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_client_that_reconnects_with_its_last_event_id_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, api) = one_node(dir.path(), None).await;
    let base = format!("http://{}", api.local_addr());
    let url = format!("{base}/v1/watch");
    let http = reqwest::Client::new();
    let announce = |name: &'static str| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let created = http
                .post(format!("{base}/v1/specialists"))
                .json(
                    &json!({"name": name, "capabilities": ["x"], "endpoint": "https://x.example"}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(created.status(), StatusCode::CREATED);
        }
    };

    let mut first = Events::open(&http, &url, None).await;
    for name in ["s1", "s2", "s3"] {
        announce(name).await;
    }
    let seen = first.next().await;
    assert_eq!(
        (
            seen.event.as_str(),
            seen.data["specialist"]["name"].as_str()
        ),
        ("added", Some("s1"))
    );
    // The client goes away after one event; more happens while it is gone.
    drop(first);
    announce("s4").await;
    let withdrawn = http
        .delete(format!("{base}/v1/specialists/s2"))
        .send()
        .await
        .unwrap();
    assert!(withdrawn.status().is_success());

    // Back with the id it saw last: everything after it, in order, ids
    // consecutive.
    let mut again = Events::open(&http, &url, Some(&seen.id)).await;
    let (boot, number) = seen.id.split_once('-').unwrap();
    let mut number: u64 = number.parse().unwrap();
    for (kind, name) in [
        ("added", "s2"),
        ("added", "s3"),
        ("added", "s4"),
        ("removed", "s2"),
    ] {
        let event = again.next().await;
        number += 1;
        assert_eq!(event.id, format!("{boot}-{number}"));
        assert_eq!(event.event, kind);
        assert_eq!(event.data["event"], kind);
        assert_eq!(event.data["specialist"]["name"], name);
    }
    // Then the live stream goes on.
    announce("s5").await;
    let live = again.next().await;
    assert_eq!(live.data["specialist"]["name"], "s5");
    assert_eq!(live.id, format!("{boot}-{}", number + 1));

    // An id from another run of the node, or one not yet given, cannot be
    // resumed without a gap: the stream says so first.
    for stale in [format!("0{boot}-3"), format!("{boot}-999"), "junk".into()] {
        let mut events = Events::open(&http, &url, Some(&stale)).await;
        let reset = events.next().await;
        assert_eq!(reset.event, "reset", "after {stale}");
        assert!(reset.data["reason"].is_string());
        // Resuming from the reset's own id continues without another one.
        let mut after = Events::open(&http, &url, Some(&reset.id)).await;
        announce("s6").await;
        let next = after.next().await;
        assert_eq!(next.event, "added", "{next:?}");
        let _ = http
            .delete(format!("{base}/v1/specialists/s6"))
            .send()
            .await
            .unwrap();
        let removed = after.next().await;
        assert_eq!(removed.event, "removed");
    }
    stop(api, nodes).await;
}

/// The routes the router registers, read from its source: `(path, method)`.
fn registered_routes() -> Vec<(String, String)> {
    let source = include_str!("../src/api/routes.rs");
    let router = &source[source.find("Router::new()").unwrap()..];
    let router = &router[..router.find(".fallback(").unwrap()];
    let mut routes = Vec::new();
    for part in router.split(".route(").skip(1) {
        let path = part.trim_start().strip_prefix('"').unwrap();
        let path = &path[..path.find('"').unwrap()];
        for method in ["get", "post", "delete", "put", "patch"] {
            let call = format!("{method}(");
            let found = part.match_indices(&call).any(|(at, _)| {
                at == 0
                    || !part.as_bytes()[at - 1].is_ascii_alphanumeric()
                        && part.as_bytes()[at - 1] != b'_'
            });
            if found {
                routes.push((path.to_string(), method.to_string()));
            }
        }
    }
    routes.sort();
    routes
}

/// What in `value` does not match `schema`, one line per mismatch. It checks
/// the subset of JSON Schema 2020-12 the document uses: `$ref`, `type`,
/// `enum`, `const`, `oneOf`, `anyOf`, `properties`, `required`,
/// `additionalProperties`, `items`, `prefixItems`, `minItems`, `maxItems`,
/// `minimum`, `maximum` and `pattern` (of the form `^[class]{n}$`); any other keyword
/// that constrains a value fails the test, so the checker cannot silently
/// pass what it does not understand.
fn mismatches(document: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    const KNOWN: &[&str] = &[
        "$ref",
        "type",
        "enum",
        "const",
        "oneOf",
        "anyOf",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "pattern",
        "description",
        "format",
        "default",
        "title",
    ];
    if let Some(map) = schema.as_object() {
        for keyword in map.keys() {
            assert!(
                KNOWN.contains(&keyword.as_str()),
                "{at}: the checker does not know {keyword}"
            );
        }
    }
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.strip_prefix("#/components/schemas/").unwrap();
        let target = &document["components"]["schemas"][name];
        assert!(!target.is_null(), "{reference} is not in the document");
        return mismatches(document, target, value, at);
    }
    let matching = |options: &Value| {
        options.as_array().map(|options| {
            options
                .iter()
                .filter(|option| mismatches(document, option, value, at).is_empty())
                .count()
        })
    };
    if let Some(matched) = matching(&schema["oneOf"]) {
        if matched != 1 {
            return vec![format!(
                "{at}: matches {matched} of oneOf, not one: {value}"
            )];
        }
    }
    if let Some(matched) = matching(&schema["anyOf"]) {
        if matched == 0 {
            return vec![format!("{at}: matches none of anyOf: {value}")];
        }
    }
    let mut out = Vec::new();
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            out.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(constant) = schema.get("const") {
        if constant != value {
            out.push(format!("{at}: {value} is not {constant}"));
        }
    }
    let kinds: Vec<&str> = match &schema["type"] {
        Value::String(kind) => vec![kind.as_str()],
        Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let is = |kind: &str| match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("type {other} is not checked here"),
    };
    if !kinds.is_empty() && !kinds.iter().any(|kind| is(kind)) {
        out.push(format!("{at}: {value} is not {kinds:?}"));
        return out;
    }
    if let (Some(minimum), Some(number)) = (schema["minimum"].as_f64(), value.as_f64()) {
        if number < minimum {
            out.push(format!("{at}: {value} is below {minimum}"));
        }
    }
    if let (Some(maximum), Some(number)) = (schema["maximum"].as_f64(), value.as_f64()) {
        if number > maximum {
            out.push(format!("{at}: {value} is above {maximum}"));
        }
    }
    if let (Some(pattern), Some(text)) = (schema["pattern"].as_str(), value.as_str()) {
        if !matches_pattern(pattern, text) {
            out.push(format!("{at}: {text:?} does not match {pattern}"));
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema["properties"].as_object();
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap();
            if !object.contains_key(name) {
                out.push(format!("{at}: missing {name}"));
            }
        }
        for (name, field) in object {
            match properties.and_then(|properties| properties.get(name)) {
                Some(property) => out.extend(mismatches(
                    document,
                    property,
                    field,
                    &format!("{at}.{name}"),
                )),
                None if schema["additionalProperties"] == false => {
                    out.push(format!("{at}: {name} is not in the document"))
                }
                None => {
                    if let Some(extra) = schema["additionalProperties"].as_object() {
                        out.extend(mismatches(
                            document,
                            &Value::Object(extra.clone()),
                            field,
                            &format!("{at}.{name}"),
                        ));
                    }
                }
            }
        }
    }
    if let Some(values) = value.as_array() {
        let prefix = schema["prefixItems"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        for (index, item) in values.iter().enumerate() {
            let item_schema = prefix.get(index).or(schema.get("items"));
            if let Some(item_schema) = item_schema {
                out.extend(mismatches(
                    document,
                    item_schema,
                    item,
                    &format!("{at}[{index}]"),
                ));
            }
        }
        let length = values.len() as u64;
        if schema["minItems"].as_u64().is_some_and(|min| length < min)
            || schema["maxItems"].as_u64().is_some_and(|max| length > max)
        {
            out.push(format!("{at}: {length} items is outside the bounds"));
        }
    }
    out
}

/// Whether `text` matches `pattern`, a pattern of the one form the document
/// uses: `^[class]{n}$`, the class made of single characters and ranges.
fn matches_pattern(pattern: &str, text: &str) -> bool {
    let inner = pattern
        .strip_prefix("^[")
        .and_then(|rest| rest.strip_suffix("}$"))
        .unwrap_or_else(|| panic!("pattern {pattern} is not checked here"));
    let (class, count) = inner.split_once("]{").unwrap();
    let count: usize = count.parse().unwrap();
    let class: Vec<char> = class.chars().collect();
    let allowed = |c: char| {
        let mut i = 0;
        while i < class.len() {
            if i + 2 < class.len() && class[i + 1] == '-' {
                if (class[i]..=class[i + 2]).contains(&c) {
                    return true;
                }
                i += 3;
            } else {
                if class[i] == c {
                    return true;
                }
                i += 1;
            }
        }
        false
    };
    text.chars().count() == count && text.chars().all(allowed)
}

#[test]
fn the_schema_checker_catches_what_it_checks() {
    let document = json!({ "components": { "schemas": {
        "Id": { "type": "string", "pattern": "^[a-z2-7]{4}$" },
        "Kind": { "oneOf": [{ "const": "a" }, { "const": "b" }] },
        "Thing": {
            "type": "object",
            "properties": {
                "id": { "$ref": "#/components/schemas/Id" },
                "kind": { "$ref": "#/components/schemas/Kind" },
                "maybe": { "anyOf": [{ "$ref": "#/components/schemas/Id" }, { "type": "null" }] },
                "pair": { "type": "array", "prefixItems": [{ "type": "string" }, { "type": "integer", "minimum": 0 }], "minItems": 2, "maxItems": 2 },
            },
            "required": ["id", "kind"],
            "additionalProperties": false,
        },
    } } });
    let thing = json!({ "$ref": "#/components/schemas/Thing" });
    let good = json!({ "id": "ab27", "kind": "a", "maybe": null, "pair": ["x", 3] });
    assert_eq!(
        mismatches(&document, &thing, &good, "t"),
        Vec::<String>::new()
    );
    for bad in [
        json!({ "id": "ab2", "kind": "a" }),
        json!({ "id": "AB27", "kind": "a" }),
        json!({ "id": "ab27", "kind": "c" }),
        json!({ "id": "ab27", "kind": "a", "maybe": "x" }),
        json!({ "id": "ab27", "kind": "a", "pair": ["x", -1] }),
        json!({ "id": "ab27", "kind": "a", "pair": [3, 3] }),
        json!({ "id": "ab27", "kind": "a", "pair": ["x"] }),
        json!({ "id": "ab27", "kind": "a", "extra": 1 }),
        json!({ "kind": "a" }),
    ] {
        assert!(
            !mismatches(&document, &thing, &bad, "t").is_empty(),
            "{bad} passed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_covers_every_route_and_matches_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = federation(dir.path(), 2).await;
    let api = serve(nodes[0].client(), "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let base = format!("http://{}", api.local_addr());
    let http = reqwest::Client::new();
    let document: Value = get_json(&http, format!("{base}/v1/openapi.json")).await;
    assert_eq!(document["openapi"], "3.1.0");

    // Every route registered is documented with its methods, and nothing else.
    let mut documented = Vec::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            documented.push((path.clone(), method.clone()));
        }
    }
    documented.sort();
    assert_eq!(documented, registered_routes());
    // Every operation documents its answers, errors as problem documents.
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|status| status.starts_with('2')),
                "{method} {path} documents no success"
            );
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{method} {path} {status}"
                    );
                }
            }
            if !path.starts_with("/ui/") && path != "/" {
                assert!(responses.contains_key("401") && responses.contains_key("403"));
            }
        }
    }

    // The live answers match the documented schemas.
    let watch = format!("{base}/v1/watch");
    let mut events = Events::open(&http, &watch, None).await;
    let announced = http
        .post(format!("{base}/v1/specialists"))
        .json(&json!({"name": "ocr", "capabilities": ["ocr"], "endpoint": "https://ocr.example", "meta": {"lang": "en"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(announced.status(), StatusCode::CREATED);
    let published: Value = announced.json().await.unwrap();
    let record = published["record"].as_str().unwrap().to_string();
    eventually(
        "node 1's record arrives",
        Duration::from_secs(10),
        || async { count(&nodes[0], "summarize").await == 2 },
    )
    .await;
    let node = nodes[0].node_id().to_string();
    let answer = |path: &str, method: &str, status: &str| {
        document["paths"][path][method]["responses"][status]["content"]["application/json"]
            ["schema"]
            .clone()
    };
    let mut checked = vec![("/v1/specialists", "post", "201", published)];
    for (template, url) in [
        ("/v1/health", "/v1/health".to_string()),
        ("/v1/specialists", "/v1/specialists".to_string()),
        ("/v1/members", "/v1/members".to_string()),
        ("/v1/roster", "/v1/roster".to_string()),
        ("/v1/roster/pending", "/v1/roster/pending".to_string()),
        ("/v1/records/{origin}", format!("/v1/records/{node}")),
        (
            "/v1/provenance/{record}",
            format!("/v1/provenance/{record}"),
        ),
        ("/v1/audit", "/v1/audit?limit=50".to_string()),
    ] {
        checked.push((
            template,
            "get",
            "200",
            get_json(&http, format!("{base}{url}")).await,
        ));
    }
    // A roster proposal made here (open: one approval of two), and one made
    // by node 1 and approved here (applied).
    let node1 = nodes[1].node_id();
    let proposed = http
        .post(format!("{base}/v1/roster/proposals"))
        .json(&json!({"action": "relabel", "member": node1.to_string(), "label": "first"}))
        .send()
        .await
        .unwrap();
    assert_eq!(proposed.status(), StatusCode::CREATED);
    let proposed: Value = proposed.json().await.unwrap();
    assert_eq!(proposed["status"], "pending");
    let first = proposed["operation"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    eventually(
        "node 1 holds the proposal",
        Duration::from_secs(10),
        || async { !nodes[1].roster().await.unwrap().pending.is_empty() },
    )
    .await;
    nodes[1].approve(first).await.unwrap();
    let relabel = Action::Relabel {
        member: node1,
        label: Some("second".into()),
    };
    let (second, _) = nodes[1].propose(relabel, None, 60_000).await.unwrap();
    eventually(
        "node 0 holds node 1's proposal",
        Duration::from_secs(10),
        || async {
            let view = nodes[0].roster().await.unwrap();
            view.epoch == 1 && view.pending.iter().any(|p| p.op.id == second.id())
        },
    )
    .await;
    let approve = format!("{base}/v1/roster/proposals/{}/approve", second.id());
    let approved = post_json(&http, approve).await;
    assert_eq!(approved["status"], "applied", "{approved}");
    checked.push(("/v1/roster/proposals", "post", "201", proposed));
    checked.push(("/v1/roster/proposals/{id}/approve", "post", "200", approved));
    for (path, method, status, value) in &checked {
        let (path, method, status) = (*path, *method, *status);
        // The command-line client reads it into the API's answer types, and
        // they hold every field: written again, it is the same JSON.
        let read_back = match (path, method) {
            ("/v1/health", _) => roundtrip::<HealthAnswer>(value),
            ("/v1/specialists", "get") => roundtrip::<SpecialistsAnswer>(value),
            ("/v1/specialists", "post") => roundtrip::<Published>(value),
            ("/v1/members", _) => roundtrip::<MembersAnswer>(value),
            ("/v1/roster", _) => roundtrip::<RosterView>(value),
            ("/v1/roster/pending", _) => roundtrip::<PendingAnswer>(value),
            ("/v1/records/{origin}", _) => roundtrip::<RecordAnswer>(value),
            ("/v1/provenance/{record}", _) => roundtrip::<ProvenanceAnswer>(value),
            ("/v1/audit", _) => roundtrip::<AuditAnswer>(value),
            (_, "post") => roundtrip::<RosterOutcome>(value),
            other => panic!("no answer type for {other:?}"),
        };
        assert_eq!(&read_back, value, "{method} {path}");
        let schema = answer(path, method, status);
        assert!(
            !schema.is_null(),
            "{method} {path} {status} has no JSON schema"
        );
        let wrong = mismatches(&document, &schema, value, path);
        assert!(wrong.is_empty(), "{method} {path}: {wrong:#?}");
    }
    // The request bodies sent here match the documented request schemas, and
    // a body the node refuses does not.
    let request = |path: &str| {
        document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
            .clone()
    };
    let node1_id = nodes[1].node_id().to_string();
    for (path, body, fits) in [
        (
            "/v1/specialists",
            json!({"name": "ocr", "endpoint": "https://ocr.example"}),
            true,
        ),
        (
            "/v1/specialists",
            json!({"name": "ocr", "endpoint": "x", "port": 1}),
            false,
        ),
        (
            "/v1/roster/proposals",
            json!({"action": "relabel", "member": node1_id, "label": "first"}),
            true,
        ),
        (
            "/v1/roster/proposals",
            json!({"action": "threshold", "threshold": "two-thirds"}),
            true,
        ),
        (
            "/v1/roster/proposals",
            json!({"action": "threshold", "threshold": 2}),
            true,
        ),
        (
            "/v1/roster/proposals",
            json!({"action": "promote", "member": node1_id}),
            false,
        ),
        (
            "/v1/roster/proposals",
            json!({"action": "remove", "member": "nobody"}),
            false,
        ),
    ] {
        let wrong = mismatches(&document, &request(path), &body, path);
        assert_eq!(wrong.is_empty(), fits, "{body}: {wrong:?}");
    }
    // So do the watch stream's events, added and reset.
    let stream =
        &document["paths"]["/v1/watch"]["get"]["responses"]["200"]["content"]["text/event-stream"];
    let event_schema = &stream["x-event-data"];
    assert!(!event_schema.is_null(), "the watch stream's event schema");
    let mut seen = Vec::new();
    while !seen.contains(&"added".to_string()) {
        let event = events.next().await;
        assert_eq!(event.data["event"], event.event.as_str());
        let wrong = mismatches(&document, event_schema, &event.data, "event");
        assert!(wrong.is_empty(), "{wrong:#?}");
        seen.push(event.event);
    }
    let mut resumed = Events::open(&http, &watch, Some("another-boot-7")).await;
    let reset = resumed.next().await;
    assert_eq!(reset.event, "reset");
    let wrong = mismatches(&document, event_schema, &reset.data, "reset");
    assert!(wrong.is_empty(), "{wrong:#?}");
    drop((events, resumed));
    // A problem document matches its schema too.
    let missing = get_json(&http, format!("{base}/v1/records/zzzz")).await;
    let schema = json!({"$ref": "#/components/schemas/Problem"});
    assert!(mismatches(&document, &schema, &missing, "problem").is_empty());
    // And the checker catches a renamed field.
    let mut renamed = get_json(&http, format!("{base}/v1/members")).await;
    let member = renamed["members"][0].as_object_mut().unwrap();
    let label = member.remove("label").unwrap();
    member.insert("name".into(), label);
    let wrong = mismatches(
        &document,
        &answer("/v1/members", "get", "200"),
        &renamed,
        "members",
    );
    assert_eq!(wrong.len(), 2, "{wrong:?}");
    // ...and so does the client's reading of it.
    assert!(serde_json::from_value::<MembersAnswer>(renamed).is_err());

    // Leaving, last: the node stops.
    let left = post_json(&http, format!("{base}/v1/leave")).await;
    assert_eq!(left["stopping"], true);
    assert_eq!(roundtrip::<Published>(&left), left);
    let wrong = mismatches(
        &document,
        &answer("/v1/leave", "post", "200"),
        &left,
        "leave",
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
    stop(api, nodes).await;
}

/// `value` read as `T` and written again.
fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(value: &Value) -> Value {
    let read: T = serde_json::from_value(value.clone()).unwrap();
    serde_json::to_value(read).unwrap()
}
