//! The API described in OpenAPI 3.1, served at `GET /v1/openapi.json`.
//!
//! The document is written here, next to the handlers, rather than derived
//! from types: most answers are assembled from the node's views. What keeps it
//! true is `tests/api.rs`: every route the router registers must be in it with
//! its methods (and nothing else), and the live answers of the read endpoints
//! must match the response schemas, which refuse unknown fields, so a renamed
//! or added field fails the test until the document says so.

use serde_json::{json, Value};

/// A reference to a schema of the document.
fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// `200` with a JSON body of schema `name`.
fn ok(name: &str, description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": schema(name) } },
    })
}

/// A problem document answer.
fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/problem+json": { "schema": schema("Problem") } },
    })
}

/// The answers every request may get: refused by the token or host check, a
/// node that stopped.
fn common(mut responses: Value) -> Value {
    if let Some(map) = responses.as_object_mut() {
        map.insert(
            "401".into(),
            problem("unauthorized: the API has a token and the request did not send it"),
        );
        map.insert(
            "403".into(),
            problem("foreign-host: a tokenless API refuses other hosts and web pages"),
        );
        map.insert("500".into(), problem("the node failed or stopped"));
    }
    responses
}

fn query(name: &str, description: &str, kind: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": kind } })
}

fn path_id(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": { "type": "string" } })
}

fn nullable(kind: &str) -> Value {
    json!({ "type": [kind, "null"] })
}

fn strings() -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}

/// An object schema with exactly these properties, all of them required
/// unless listed in `optional`.
fn object(properties: Value, optional: &[&str]) -> Value {
    let required: Vec<&String> = properties
        .as_object()
        .map(|map| {
            map.keys()
                .filter(|key| !optional.contains(&key.as_str()))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn schemas() -> Value {
    let node = json!({ "type": "string", "description": "a node id: base32 of the ed25519 public key, 52 characters" });
    let record =
        json!({ "type": "string", "description": "a record id: blake3, 64 hex characters" });
    let step = object(
        json!({
            "index": { "type": "integer" }, "at_ms": { "type": "integer" },
            "kind": { "type": "string" }, "peer": node, "reason": { "type": "string" },
        }),
        &["peer"],
    );
    let operation = json!({
        "id": { "type": "string" }, "epoch": { "type": "integer" },
        "action": { "type": "string" }, "summary": { "type": "string" },
        "proposer": node, "approvals": strings(),
        "issued_at_ms": { "type": "integer" }, "expires_at_ms": { "type": "integer" },
    });
    // An open proposal: the operation, and where this node stands on it.
    let mut proposal = operation.clone();
    if let Some(fields) = proposal.as_object_mut() {
        fields.insert("needed".into(), json!({ "type": "integer" }));
        fields.insert("approved_here".into(), json!({ "type": "boolean" }));
        fields.insert("voted_otherwise".into(), json!({ "type": "boolean" }));
    }
    json!({
        "Problem": {
            "type": "object",
            "description": "RFC 7807 problem details",
            "properties": {
                "type": { "type": "string" }, "title": { "type": "string" },
                "status": { "type": "integer" }, "detail": { "type": "string" },
            },
            "required": ["type", "title", "status", "detail"],
        },
        "Specialist": {
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "letters, digits, '.', '_', '-'" },
                "capabilities": strings(),
                "endpoint": { "type": "string", "description": "an http or https URL" },
                "meta": { "type": "object", "additionalProperties": { "type": "string" } },
            },
            "required": ["name", "capabilities", "endpoint"],
            "additionalProperties": false,
        },
        "Health": object(json!({
            "status": { "enum": ["ok", "recovering", "halted", "clock_off"] },
            "node": node, "federation": { "type": "string" },
            "records": { "type": "integer" }, "peers_connected": { "type": "integer" },
            "signing": { "enum": ["ok", "recovering", "halted"] },
            "problem": { "type": "string" }, "foreign_signer": { "type": "boolean" },
            "quarantined": { "type": "boolean" }, "clock_offset_ms": { "type": "integer" },
            "clock_warning": { "type": "boolean" }, "wall_clock_step_ms": { "type": "integer" },
            "startup_warnings": strings(),
        }), &["problem", "clock_offset_ms", "startup_warnings"]),
        "Found": object(json!({
            "origin": node, "record": record, "specialist": schema("Specialist"),
            "connected": { "type": "boolean" }, "last_heard_ms": nullable("integer"),
        }), &[]),
        "Specialists": object(json!({
            "specialists": { "type": "array", "items": schema("Found") },
        }), &[]),
        "Published": object(json!({
            "origin": node, "record": record, "seq": { "type": "integer" },
        }), &[]),
        "Left": object(json!({
            "origin": node, "record": record, "seq": { "type": "integer" },
            "stopping": { "type": "boolean" },
        }), &[]),
        "Member": object(json!({
            "id": node, "label": nullable("string"), "seq": nullable("integer"),
            "record": nullable("string"), "addrs": strings(),
            "specialists": { "type": "integer" }, "quarantined": { "type": "boolean" },
            "banned": { "type": "boolean" }, "connected": { "type": "boolean" },
            "last_heard_ms": nullable("integer"), "this_node": { "type": "boolean" },
        }), &[]),
        "Members": object(json!({
            "members": { "type": "array", "items": schema("Member") },
        }), &[]),
        "Record": object(json!({
            "origin": node, "record": record, "seq": { "type": "integer" },
            "prev": record, "issued_at_ms": { "type": "integer" },
            "expires_at_ms": { "type": "integer" }, "addrs": strings(),
            "specialists": { "type": "array", "items": schema("Specialist") },
            "signed_hex": { "type": "string" },
        }), &[]),
        "Step": step,
        "Trace": object(json!({
            "record": record, "origin": nullable("string"),
            "evidence": { "type": ["object", "null"], "description": "signer, seq, prev, issued_at_ms, expires_at_ms, specialists, signed_hex" },
            "evidence_invalid": { "type": "boolean" },
            "first_receipt": { "oneOf": [schema("Step"), { "type": "null" }] },
            "history": { "type": "array", "items": schema("Step") },
            "relays": { "type": "array", "items": schema("Step") },
            "later_versions": { "type": "array", "items": object(json!({
                "record": record, "seq": { "type": "integer" }, "at_ms": { "type": "integer" },
            }), &[]) },
            "equivocations": { "type": "array", "items": schema("Step") },
        }), &[]),
        "Provenance": object(json!({
            "trace": schema("Trace"), "current": { "type": "boolean" },
            "origin_quarantined": { "type": "boolean" }, "origin_label": nullable("string"),
        }), &[]),
        "Entry": object(json!({
            "index": { "type": "integer" }, "at_ms": { "type": "integer" },
            "kind": { "type": "string" }, "peer": nullable("string"),
            "origin": nullable("string"), "record": nullable("string"),
            "reason": { "type": "string" }, "hash": { "type": "string" },
        }), &[]),
        "Entries": object(json!({
            "entries": { "type": "array", "items": schema("Entry") },
        }), &[]),
        "Operation": object(operation.clone(), &[]),
        "Proposal": object(proposal, &[]),
        "Roster": object(json!({
            "federation": { "type": "string" }, "genesis": { "type": "string" },
            "epoch": { "type": "integer" }, "head": { "type": "string" },
            "threshold": { "type": "string" }, "needed": { "type": "integer" },
            "members": { "type": "array", "items": object(json!({ "id": node, "label": nullable("string") }), &[]) },
            "pending": { "type": "array", "items": schema("Proposal") },
            "chain": { "type": "array", "items": schema("Operation") },
            "fork": { "type": ["object", "null"] },
            "votes": { "type": "array", "items": { "type": "array" } },
            "quarantined": { "type": "array", "items": { "type": "array" } },
        }), &[]),
        "Pending": object(json!({
            "epoch": { "type": "integer" }, "needed": { "type": "integer" },
            "pending": { "type": "array", "items": schema("Proposal") },
        }), &[]),
        "Vote": object(json!({
            "status": { "enum": ["pending", "applied"] },
            "approvals": { "type": "integer" }, "needed": { "type": "integer" },
            "operation": schema("Operation"),
        }), &[]),
        "ProposalBody": {
            "type": "object",
            "description": "action and its fields: add (member, label, countersignature), remove (member), rotate (from, to, countersignature), threshold (threshold), relabel (member, label), pardon (origin, above_seq); lifetime_s optional",
            "properties": { "action": { "enum": ["add", "remove", "rotate", "threshold", "relabel", "pardon"] } },
            "required": ["action"],
        },
    })
}

/// The document.
pub(super) fn document() -> Value {
    let publish_errors = |mut responses: Value| {
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
                map.insert(status.into(), problem(why));
            }
        }
        common(responses)
    };
    let watch_event = "one event: `id: BOOT-N`, `event: KIND`, `data: JSON` with event, origin, record, seq, specialist, reason (reset only), at_ms";
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tidings node API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The local HTTP API of a tidings node. It listens on 127.0.0.1 unless a token is set; with a token, send `Authorization: Bearer TOKEN`. Errors are RFC 7807 problem documents. Node ids may be roster labels or unique prefixes, record ids unique prefixes; times are Unix milliseconds or RFC 3339.",
        },
        "components": {
            "schemas": schemas(),
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
                "responses": common(json!({ "200": { "description": "OpenAPI 3.1", "content": { "application/json": {} } } })),
            }},
            "/v1/health": { "get": {
                "summary": "whether the node can sign, its clock, its peers",
                "responses": common(json!({ "200": ok("Health", "the node's health") })),
            }},
            "/v1/specialists": {
                "get": {
                    "summary": "look up specialists",
                    "parameters": [
                        query("capability", "only specialists with this capability", "string"),
                        query("name", "only specialists with this name", "string"),
                        query("live", "only origins connected now (idle ones are dialled first)", "boolean"),
                    ],
                    "responses": common(json!({
                        "200": ok("Specialists", "the matches"),
                        "400": problem("invalid-query: a malformed query string"),
                    })),
                },
                "post": {
                    "summary": "announce a specialist (or replace the one with its name)",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": schema("Specialist") } } },
                    "responses": publish_errors(json!({ "201": ok("Published", "the new record, durable") })),
                },
            },
            "/v1/specialists/{name}": { "delete": {
                "summary": "withdraw a specialist",
                "parameters": [path_id("name", "the specialist's name")],
                "responses": publish_errors(json!({
                    "200": ok("Published", "the new record, durable"),
                    "404": problem("unknown-specialist"),
                })),
            }},
            "/v1/leave": { "post": {
                "summary": "withdraw every specialist in one record, then stop the node",
                "responses": publish_errors(json!({ "200": ok("Left", "the record; the node stops once it is sent") })),
            }},
            "/v1/members": { "get": {
                "summary": "the roster's members as this node sees them",
                "responses": common(json!({ "200": ok("Members", "every member") })),
            }},
            "/v1/roster": { "get": {
                "summary": "the roster chain",
                "responses": common(json!({ "200": ok("Roster", "epoch, members, operations, proposals, fork") })),
            }},
            "/v1/roster/pending": { "get": {
                "summary": "open roster proposals",
                "responses": common(json!({ "200": ok("Pending", "the open proposals") })),
            }},
            "/v1/roster/proposals": { "post": {
                "summary": "propose a roster operation (this node signs it)",
                "requestBody": { "required": true, "content": { "application/json": { "schema": schema("ProposalBody") } } },
                "responses": common(json!({
                    "201": ok("Vote", "the proposal, once this node's vote is durable"),
                    "400": problem("invalid-proposal"),
                    "409": problem("this node signed another operation for that epoch"),
                    "415": problem("a body that is not JSON"),
                    "422": problem("an operation the roster refuses"),
                })),
            }},
            "/v1/roster/proposals/{id}/approve": { "post": {
                "summary": "approve an open proposal",
                "parameters": [path_id("id", "the proposal's id or a unique prefix")],
                "responses": common(json!({
                    "200": ok("Vote", "the proposal with this node's approval"),
                    "400": problem("ambiguous-id or invalid-id"),
                    "404": problem("no such open proposal"),
                    "409": problem("already approved, or this node signed another"),
                    "410": problem("the proposal expired"),
                })),
            }},
            "/v1/roster/export": { "get": {
                "summary": "the roster chain from its genesis, for `tidings verify`",
                "responses": common(json!({ "200": { "description": "text", "content": { "text/plain": {} } } })),
            }},
            "/v1/records/{origin}": { "get": {
                "summary": "an origin's current signed record",
                "parameters": [path_id("origin", "a node id, roster label or unique prefix")],
                "responses": common(json!({
                    "200": ok("Record", "the record, with its signed bytes in hex"),
                    "400": problem("ambiguous-id or invalid-id"),
                    "404": problem("unknown-id or unknown-origin"),
                })),
            }},
            "/v1/provenance/{record}": { "get": {
                "summary": "a record's provenance from this node's audit log",
                "parameters": [path_id("record", "a record id or unique prefix")],
                "responses": common(json!({
                    "200": ok("Provenance", "signer, evidence, receipts, relays"),
                    "400": problem("ambiguous-id or invalid-id"),
                    "404": problem("unknown-id or unknown-record"),
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
                "responses": common(json!({
                    "200": ok("Entries", "the entries, oldest first"),
                    "400": problem("invalid-query, invalid-time, invalid-kind, ambiguous-id or invalid-id"),
                    "404": problem("unknown-id"),
                })),
            }},
            "/v1/watch": { "get": {
                "summary": "directory changes as server-sent events",
                "description": "Events added, updated, removed, expired, quarantined, left_roster, pardoned, each with an id BOOT-N. Send Last-Event-ID to resume after that event (the last 4,096 are kept); when that cannot be done without a gap the stream starts with a reset event.",
                "parameters": [{ "name": "Last-Event-ID", "in": "header", "required": false, "schema": { "type": "string" } }],
                "responses": common(json!({
                    "200": { "description": watch_event, "content": { "text/event-stream": {} } },
                    "503": problem("too-many-watchers (Retry-After)"),
                })),
            }},
            "/metrics": { "get": {
                "summary": "Prometheus text",
                "responses": common(json!({ "200": { "description": "metrics", "content": { "text/plain": {} } } })),
            }},
        },
    })
}
