//! The API described in OpenAPI 3.1, served at `GET /v1/openapi.json`.
//!
//! The schemas are generated from the types the handlers write and read
//! ([`answers`](super::answers), the node's views, the audit log's entries,
//! [`ProblemDocument`], the request bodies) with `schemars`, in JSON Schema
//! 2020-12 as OpenAPI 3.1 uses it. Answers are described as the node writes
//! them (a field it always writes is required, and an answer has no other
//! fields); request bodies as it reads them. A type whose two forms differ
//! (a specialist's `capabilities` may be left out when announcing one) is
//! described twice, the request form named with `Request`.
//! The paths, their parameters and their error statuses are listed here, each
//! answer named by its type. `tests/api.rs` checks that every route the router
//! registers is here with its methods and nothing else, and that live answers
//! of every endpoint match their schemas.

use std::cell::RefCell;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Value};
use tidings_keys::string_schema;

use super::answers::{
    AuditAnswer, HealthAnswer, MembersAnswer, PendingAnswer, ProvenanceAnswer, Published,
    RecordAnswer, RosterOutcome, SpecialistsAnswer, WatchEvent,
};
use super::roster::ProposalBody;
use super::ProblemDocument;
use crate::net::node::RosterView;
use crate::proto::roster::RosterHash;
use crate::proto::{RecordId, Specialist};

string_schema!(
    RecordId,
    "RecordId",
    "^[0-9a-f]{64}$",
    "A record id: blake3 of the signed record, 64 hex characters."
);
string_schema!(
    RosterHash,
    "RosterHash",
    "^[0-9a-f]{64}$",
    "The id of a roster operation or state: blake3, 64 hex characters."
);

/// Where the request generator puts its schemas until they are merged.
const REQUESTS: &str = "/components/requests";
/// Where the document keeps them.
const SCHEMAS: &str = "/components/schemas";

/// The document's schemas, gathered as the paths name their types.
struct Components {
    /// Answers, as the node serializes them.
    answers: RefCell<SchemaGenerator>,
    /// Request bodies, as the node deserializes them.
    requests: RefCell<SchemaGenerator>,
}

impl Components {
    fn new() -> Self {
        let settings = |path: &str| {
            SchemaSettings::draft2020_12().with(|settings| {
                settings.definitions_path = path.to_string().into();
                settings.meta_schema = None;
            })
        };
        Self {
            answers: RefCell::new(settings(SCHEMAS).for_serialize().into_generator()),
            requests: RefCell::new(settings(REQUESTS).for_deserialize().into_generator()),
        }
    }

    /// The schema of answer `T` (a reference to it).
    fn answer<T: JsonSchema>(&self) -> Value {
        self.answers.borrow_mut().subschema_for::<T>().to_value()
    }

    /// A `2xx` answer with a JSON body of type `T`.
    fn ok<T: JsonSchema>(&self, description: &str) -> Value {
        json!({
            "description": description,
            "content": { "application/json": { "schema": self.answer::<T>() } },
        })
    }

    /// A required JSON request body of type `T`.
    fn body<T: JsonSchema>(&self) -> Value {
        let schema = self.requests.borrow_mut().subschema_for::<T>().to_value();
        json!({ "required": true, "content": { "application/json": { "schema": schema } } })
    }

    /// A problem document answer.
    fn problem(&self, description: &str) -> Value {
        json!({
            "description": description,
            "content": { "application/problem+json": { "schema": self.answer::<ProblemDocument>() } },
        })
    }

    /// `responses` with the answers every request may get: refused by the
    /// token or host check, a node that stopped.
    fn common(&self, mut responses: Value) -> Value {
        if let Some(map) = responses.as_object_mut() {
            map.insert(
                "401".into(),
                self.problem("unauthorized: the API has a token and the request did not send it"),
            );
            map.insert(
                "403".into(),
                self.problem("foreign-host: a tokenless API refuses other hosts and web pages"),
            );
            map.insert("500".into(), self.problem("the node failed or stopped"));
        }
        responses
    }

    /// The `components.schemas` of the document, and `document` with its
    /// request references pointed at them.
    fn finish(self, document: &mut Value) -> Value {
        let mut schemas = self.answers.into_inner().take_definitions(true);
        for schema in schemas.values_mut() {
            close_objects(schema);
        }
        let mut renamed = Vec::new();
        for (name, schema) in self.requests.into_inner().take_definitions(true) {
            let target = match schemas.get(&name) {
                Some(same) if *same == schema => name.clone(),
                Some(_) => format!("{name}Request"),
                None => name.clone(),
            };
            renamed.push((
                format!("#{REQUESTS}/{name}"),
                format!("#{SCHEMAS}/{target}"),
            ));
            schemas.entry(target).or_insert(schema);
        }
        let mut schemas = Value::Object(schemas);
        for value in [&mut schemas, document] {
            retarget(value, &renamed);
        }
        schemas
    }
}

/// Every object schema of an answer that lists its properties admits no
/// others: the node writes exactly those, so a field added or renamed in the
/// code and not here cannot pass the document's test unnoticed.
fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(close_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// Points every `$ref` in `value` named in `renamed` at its new name.
fn retarget(value: &mut Value, renamed: &[(String, String)]) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get_mut("$ref") {
                if let Some((_, to)) = renamed.iter().find(|(from, _)| from == reference) {
                    *reference = to.clone();
                }
            }
            map.values_mut().for_each(|value| retarget(value, renamed));
        }
        Value::Array(items) => items.iter_mut().for_each(|value| retarget(value, renamed)),
        _ => {}
    }
}

fn query(name: &str, description: &str, kind: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": kind } })
}

fn path_id(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": { "type": "string" } })
}

/// The document.
pub(super) fn document() -> Value {
    let c = Components::new();
    let mut document = paths(&c);
    let schemas = c.finish(&mut document);
    document["components"]["schemas"] = schemas;
    document
}

impl Components {
    /// `responses` with the errors of the endpoints that publish a record.
    fn publish_errors(&self, mut responses: Value) -> Value {
        if let Some(map) = responses.as_object_mut() {
            for (status, why) in [
                ("400", "invalid-specialist: a bad name or an endpoint that is not an http or https URL"),
                ("409", "halted, refused, or configured-specialist (the configuration file owns it)"),
                ("413", "a body above 64 KiB"),
                ("415", "a body that is not JSON"),
                ("422", "JSON that is not a specialist"),
                ("429", "rate-limited: publishing too fast (Retry-After)"),
                ("503", "recovering: the node recovers its chain (Retry-After)"),
            ] {
                map.insert(status.into(), self.problem(why));
            }
        }
        self.common(responses)
    }
}

/// The paths, naming their answers' types in `c`.
fn paths(c: &Components) -> Value {
    let watch_event = "a stream of events, each `id: BOOT-N`, `event: KIND` and `data:` one JSON object of schema WatchEvent (named by this media type's `x-event-data`)";
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tidings node API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The local HTTP API of a tidings node. It listens on 127.0.0.1 unless a token is set; with a token, send `Authorization: Bearer TOKEN`. Errors are RFC 7807 problem documents. Node ids may be roster labels or unique prefixes, record ids unique prefixes; times are Unix milliseconds or RFC 3339.",
        },
        "components": {
                        "securitySchemes": { "token": { "type": "http", "scheme": "bearer" } },
        },
        "security": [{}, { "token": [] }],
        "paths": {
            "/": { "get": {
                "summary": "the node's web page (served without the token)",
                "responses": { "200": { "description": "HTML", "content": { "text/html": {} } } },
            }},
            "/ui/app.js": { "get": {
                "summary": "the web page's script",
                "responses": { "200": { "description": "JavaScript", "content": { "text/javascript": {} } } },
            }},
            "/ui/app.css": { "get": {
                "summary": "the web page's style sheet",
                "responses": { "200": { "description": "CSS", "content": { "text/css": {} } } },
            }},
            "/v1/openapi.json": { "get": {
                "summary": "this document",
                "responses": c.common(json!({ "200": { "description": "OpenAPI 3.1", "content": { "application/json": {} } } })),
            }},
            "/v1/health": { "get": {
                "summary": "whether the node can sign, its clock, its peers",
                "responses": c.common(json!({ "200": c.ok::<HealthAnswer>("the node's health") })),
            }},
            "/v1/specialists": {
                "get": {
                    "summary": "look up specialists",
                    "parameters": [
                        query("capability", "only specialists with this capability", "string"),
                        query("name", "only specialists with this name", "string"),
                        query("live", "only origins connected now (idle ones are dialled first)", "boolean"),
                    ],
                    "responses": c.common(json!({
                        "200": c.ok::<SpecialistsAnswer>("the matches"),
                        "400": c.problem("invalid-query: a malformed query string"),
                    })),
                },
                "post": {
                    "summary": "announce a specialist (or replace the one with its name)",
                    "requestBody": c.body::<Specialist>(),
                    "responses": c.publish_errors(json!({ "201": c.ok::<Published>("the new record, durable") })),
                },
            },
            "/v1/specialists/{name}": { "delete": {
                "summary": "withdraw a specialist",
                "parameters": [path_id("name", "the specialist's name")],
                "responses": c.publish_errors(json!({
                    "200": c.ok::<Published>("the new record, durable"),
                    "404": c.problem("unknown-specialist"),
                })),
            }},
            "/v1/leave": { "post": {
                "summary": "withdraw every specialist in one record, then stop the node",
                "responses": c.publish_errors(json!({ "200": c.ok::<Published>("the record; the node stops once it is sent") })),
            }},
            "/v1/members": { "get": {
                "summary": "the roster's members as this node sees them",
                "responses": c.common(json!({ "200": c.ok::<MembersAnswer>("every member") })),
            }},
            "/v1/roster": { "get": {
                "summary": "the roster chain",
                "responses": c.common(json!({ "200": c.ok::<RosterView>("epoch, members, operations, proposals, fork") })),
            }},
            "/v1/roster/pending": { "get": {
                "summary": "open roster proposals",
                "responses": c.common(json!({ "200": c.ok::<PendingAnswer>("the open proposals") })),
            }},
            "/v1/roster/proposals": { "post": {
                "summary": "propose a roster operation (this node signs it)",
                "requestBody": c.body::<ProposalBody>(),
                "responses": c.common(json!({
                    "201": c.ok::<RosterOutcome>("the proposal, once this node's vote is durable"),
                    "400": c.problem("invalid-proposal"),
                    "409": c.problem("this node signed another operation for that epoch"),
                    "415": c.problem("a body that is not JSON"),
                    "422": c.problem("an operation the roster refuses"),
                })),
            }},
            "/v1/roster/proposals/{id}/approve": { "post": {
                "summary": "approve an open proposal",
                "parameters": [path_id("id", "the proposal's id or a unique prefix")],
                "responses": c.common(json!({
                    "200": c.ok::<RosterOutcome>("the proposal with this node's approval"),
                    "400": c.problem("ambiguous-id or invalid-id"),
                    "404": c.problem("no such open proposal"),
                    "409": c.problem("already approved, or this node signed another"),
                    "410": c.problem("the proposal expired"),
                })),
            }},
            "/v1/roster/export": { "get": {
                "summary": "the roster chain from its genesis, for `tidings verify`",
                "responses": c.common(json!({ "200": { "description": "text", "content": { "text/plain": {} } } })),
            }},
            "/v1/records/{origin}": { "get": {
                "summary": "an origin's current signed record",
                "parameters": [path_id("origin", "a node id, roster label or unique prefix")],
                "responses": c.common(json!({
                    "200": c.ok::<RecordAnswer>("the record, with its signed bytes in hex"),
                    "400": c.problem("ambiguous-id or invalid-id"),
                    "404": c.problem("unknown-id or unknown-origin"),
                })),
            }},
            "/v1/provenance/{record}": { "get": {
                "summary": "a record's provenance from this node's audit log",
                "parameters": [path_id("record", "a record id or unique prefix")],
                "responses": c.common(json!({
                    "200": c.ok::<ProvenanceAnswer>("signer, evidence, receipts, relays"),
                    "400": c.problem("ambiguous-id or invalid-id"),
                    "404": c.problem("unknown-id or unknown-record"),
                })),
            }},
            "/v1/audit": { "get": {
                "summary": "audit entries",
                "parameters": [
                    query("record", "a record id or unique prefix", "string"),
                    query("origin", "a node id, label or unique prefix", "string"),
                    query("peer", "a node id, label or unique prefix", "string"),
                    query("kind", "an entry kind (accepted, rejected, relayed, ...)", "string"),
                    query("since", "Unix milliseconds or RFC 3339", "string"),
                    query("until", "Unix milliseconds or RFC 3339", "string"),
                    query("after", "entries after this index", "integer"),
                    query("limit", "at most this many entries", "integer"),
                ],
                "responses": c.common(json!({
                    "200": c.ok::<AuditAnswer>("the entries, oldest first"),
                    "400": c.problem("invalid-query, invalid-time, invalid-kind, ambiguous-id or invalid-id"),
                    "404": c.problem("unknown-id"),
                })),
            }},
            "/v1/watch": { "get": {
                "summary": "directory changes as server-sent events",
                "description": "Events added, updated, removed, expired, quarantined, left_roster, pardoned, each with an id BOOT-N. Send Last-Event-ID to resume after that event (the last 4,096 are kept); when that cannot be done without a gap the stream starts with a reset event.",
                "parameters": [{ "name": "Last-Event-ID", "in": "header", "required": false, "schema": { "type": "string" } }],
                "responses": c.common(json!({
                    "200": { "description": watch_event, "content": { "text/event-stream": {
                        "schema": { "type": "string" },
                        "x-event-data": c.answer::<WatchEvent>(),
                    } } },
                    "503": c.problem("too-many-watchers (Retry-After)"),
                })),
            }},
            "/metrics": { "get": {
                "summary": "Prometheus text",
                "responses": c.common(json!({ "200": { "description": "metrics", "content": { "text/plain": {} } } })),
            }},
        },
    })
}
