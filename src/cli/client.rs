//! The commands that talk to a running node through its local HTTP API:
//! `announce`, `withdraw`, `lookup`, `members`, `show`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tidings::api::answers::{
    MembersAnswer, ProvenanceAnswer, Published, RecordAnswer, SpecialistsAnswer,
};
use tidings::api::ProblemDocument;
use tidings::net::node::Reach;
use tidings::proto::Specialist;

use super::format::{counted, utc};

/// Where the node's API is.
#[derive(Debug, Clone, Args)]
pub(crate) struct ApiArgs {
    /// The API's base URL (default: from the config file, else http://127.0.0.1:7800).
    #[arg(long, env = "TIDINGS_API", value_name = "URL", global = true)]
    api: Option<String>,
    /// The node's configuration file, to find its API address and token.
    #[arg(
        long,
        short,
        env = "TIDINGS_CONFIG",
        value_name = "FILE",
        global = true
    )]
    config: Option<PathBuf>,
    /// The API token (default: from the config file).
    #[arg(long, env = "TIDINGS_API_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

/// Arguments of `tidings announce`.
#[derive(Debug, Args)]
pub(crate) struct AnnounceArgs {
    /// The specialist's name (letters, digits, '.', '_', '-').
    #[arg(long)]
    name: String,
    /// A capability. Repeatable.
    #[arg(long = "capability", value_name = "CAPABILITY")]
    capabilities: Vec<String>,
    /// Where to reach it.
    #[arg(long, value_name = "URL")]
    endpoint: String,
    /// Metadata, KEY=VALUE. Repeatable.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    meta: Vec<(String, String)>,
    #[command(flatten)]
    api: ApiArgs,
}

/// Arguments of `tidings withdraw`.
#[derive(Debug, Args)]
pub(crate) struct WithdrawArgs {
    /// The specialist's name.
    #[arg(long)]
    name: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// Arguments of `tidings lookup`.
#[derive(Debug, Args)]
pub(crate) struct LookupArgs {
    /// Only specialists with this capability.
    #[arg(long)]
    capability: Option<String>,
    /// Only specialists with this name.
    #[arg(long)]
    name: Option<String>,
    /// Only specialists whose node is reachable now: connected to this node,
    /// or answering a dial within a second and a half.
    #[arg(long)]
    live: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// Arguments of `tidings leave`.
#[derive(Debug, Args)]
pub(crate) struct LeaveArgs {
    #[command(flatten)]
    api: ApiArgs,
}

/// Arguments of `tidings members`.
#[derive(Debug, Args)]
pub(crate) struct MembersArgs {
    #[command(flatten)]
    api: ApiArgs,
}

/// Arguments of `tidings show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// A node (id, roster label or unique id prefix: its current record) or a
    /// record (id or unique prefix: its provenance).
    what: String,
    #[command(flatten)]
    api: ApiArgs,
}

fn parse_meta(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| "expected KEY=VALUE".into())
}

pub(crate) struct Api {
    pub(crate) base: String,
    token: Option<String>,
    pub(crate) http: reqwest::blocking::Client,
}

/// The error for an answer that is not a success: its status and the
/// problem document's title and detail (or the body as text, if it is not one).
pub(crate) fn refused(response: reqwest::blocking::Response) -> anyhow::Error {
    let status = response.status();
    let body = response.text().unwrap_or_default();
    match serde_json::from_str::<ProblemDocument>(&body) {
        Ok(problem) => anyhow::anyhow!(
            "the node answered {status} ({}): {}",
            problem.title,
            problem.detail
        ),
        Err(_) if body.trim().is_empty() => anyhow::anyhow!("the node answered {status}"),
        Err(_) => anyhow::anyhow!("the node answered {status}: {}", body.trim()),
    }
}

impl Api {
    pub(crate) fn from(args: &ApiArgs) -> anyhow::Result<Self> {
        let (mut base, mut token) = (None, None);
        let config = args.config.clone().or_else(|| {
            let default = PathBuf::from("tidings.toml");
            default.exists().then_some(default)
        });
        if let Some(path) = config {
            let loaded = tidings::net::config::load(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            base = Some(format!("http://{}", loaded.api));
            token = loaded.api_token;
        }
        let base = args
            .api
            .clone()
            .or(base)
            .unwrap_or_else(|| "http://127.0.0.1:7800".into());
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token: args.token.clone().or(token),
            http,
        })
    }

    /// `request` with the token, when there is one.
    pub(crate) fn authorize(
        &self,
        request: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// What to tell the user when a request could not be sent.
    pub(crate) fn unreachable(&self, error: reqwest::Error) -> anyhow::Error {
        if error.is_connect() {
            anyhow::anyhow!(
                "no node is answering at {} (is `tidings run` running, and is this its `api` address? use --api or --config)",
                self.base
            )
        } else {
            anyhow::anyhow!("request to {} failed: {error}", self.base)
        }
    }

    pub(crate) fn send(&self, request: reqwest::blocking::RequestBuilder) -> anyhow::Result<Value> {
        let response = self
            .authorize(request)
            .send()
            .map_err(|error| self.unreachable(error))?;
        let status = response.status();
        if !status.is_success() {
            return Err(refused(response));
        }
        Ok(response.json().unwrap_or(Value::Null))
    }

    pub(crate) fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)))
    }

    /// Posts `body` as JSON to `path`.
    pub(crate) fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
    }

    /// The body of `path` as text (for exports).
    pub(crate) fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let response = self
            .authorize(self.http.get(format!("{}{path}", self.base)))
            .send()
            .map_err(|error| anyhow::anyhow!("request to {} failed: {error}", self.base))?;
        if !response.status().is_success() {
            return Err(refused(response));
        }
        Ok(response.text()?)
    }

    /// `GET path`, read as `T`.
    pub(crate) fn get_as<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<(T, Value)> {
        let answer = self.get(path)?;
        Ok((read(&format!("GET {path}"), &answer)?, answer))
    }

    /// Whether JSON output was asked for.
    pub(crate) fn json(args: &ApiArgs) -> bool {
        args.json
    }
}

/// `answer`, the node's answer to `what`, read as `T`; an answer this client
/// cannot read is an error that says so (not a table of `-`).
pub(crate) fn read<T: DeserializeOwned>(what: &str, answer: &Value) -> anyhow::Result<T> {
    T::deserialize(answer).with_context(|| {
        format!("cannot read the node's answer to {what} (is the node another version of tidings?)")
    })
}

pub(crate) fn print_json(value: &Value) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn announce(args: &AnnounceArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from(&args.api)?;
    let meta: serde_json::Map<String, Value> = args
        .meta
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    let body = serde_json::json!({
        "name": args.name, "capabilities": args.capabilities, "endpoint": args.endpoint, "meta": meta,
    });
    let answer = api.send(
        api.http
            .post(format!("{}/v1/specialists", api.base))
            .json(&body),
    )?;
    if args.api.json {
        return print_json(&answer);
    }
    let published: Published = read("POST /v1/specialists", &answer)?;
    println!(
        "announced {} in record seq {} ({})",
        args.name, published.seq, published.record
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn withdraw(args: &WithdrawArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from(&args.api)?;
    let answer = api.send(
        api.http
            .delete(format!("{}/v1/specialists/{}", api.base, args.name)),
    )?;
    if args.api.json {
        return print_json(&answer);
    }
    let published: Published = read("DELETE /v1/specialists/{name}", &answer)?;
    println!(
        "withdrew {} in record seq {} ({})",
        args.name, published.seq, published.record
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn lookup(args: &LookupArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from(&args.api)?;
    let mut query = Vec::new();
    if let Some(capability) = &args.capability {
        query.push(("capability", capability.clone()));
    }
    if let Some(name) = &args.name {
        query.push(("name", name.clone()));
    }
    if args.live {
        query.push(("live", "true".into()));
    }
    let answer = api.send(
        api.http
            .get(format!("{}/v1/specialists", api.base))
            .query(&query),
    )?;
    if args.api.json {
        return print_json(&answer);
    }
    let found = read::<SpecialistsAnswer>("GET /v1/specialists", &answer)?.specialists;
    if found.is_empty() {
        println!("no specialist found");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<32} {:<12} {:<14} endpoint",
        "name", "capabilities", "origin", "reach"
    );
    for item in found {
        let specialist = &item.specialist;
        println!(
            "{:<24} {:<32} {:<12} {:<14} {}",
            specialist.name,
            capabilities(specialist),
            item.origin.short(),
            reach(&item.reach),
            specialist.endpoint
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A specialist's capabilities, comma-separated.
pub(crate) fn capabilities(specialist: &Specialist) -> String {
    specialist.capabilities.join(",")
}

/// `connected`, or how long ago the node was last heard from.
fn reach(reach: &Reach) -> String {
    if reach.connected {
        return "connected".into();
    }
    match reach.last_heard_ms {
        Some(at) => format!("heard {} ago", ago(at)),
        None => "never heard".into(),
    }
}

/// A short span from `at_ms` to now: `12s`, `4m`, `3h`.
fn ago(at_ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0);
    let seconds = now.saturating_sub(at_ms) / 1000;
    match seconds {
        0..=119 => format!("{seconds}s"),
        120..=7199 => format!("{}m", seconds / 60),
        _ => format!("{}h", seconds / 3600),
    }
}

pub(crate) fn leave(args: &LeaveArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from(&args.api)?;
    let answer = api.send(api.http.post(format!("{}/v1/leave", api.base)))?;
    if args.api.json {
        return print_json(&answer);
    }
    let published: Published = read("POST /v1/leave", &answer)?;
    println!(
        "left: record seq {} ({}) withdraws every specialist; the node stops once it is sent",
        published.seq, published.record
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn members(args: &MembersArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from(&args.api)?;
    let (answer, raw): (MembersAnswer, Value) = api.get_as("/v1/members")?;
    if args.api.json {
        return print_json(&raw);
    }
    println!(
        "{:<12} {:<14} {:>5} {:>11} {:<22} {:<12} status",
        "member", "label", "seq", "specialists", "address", "last heard"
    );
    for member in answer.members {
        let status: Vec<&str> = [
            (member.this_node, "this node"),
            (member.connected, "connected"),
            (member.quarantined, "QUARANTINED"),
            (member.banned, "banned"),
        ]
        .into_iter()
        .filter_map(|(on, word)| on.then_some(word))
        .collect();
        let heard = match member.last_heard_ms {
            _ if member.this_node => "-".to_string(),
            Some(at) => format!("{} ago", ago(at)),
            None => "never".into(),
        };
        println!(
            "{:<12} {:<14} {:>5} {:>11} {:<22} {:<12} {}",
            member.id.short(),
            member.label.as_deref().unwrap_or("-"),
            member
                .seq
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            member.specialists,
            member.addrs.first().map(String::as_str).unwrap_or("-"),
            heard,
            status.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn show(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from(&args.api)?;
    let what = args.what.trim();
    // A node (id, label or prefix: its current record) or else a record (id or
    // prefix): the node answers which, and names the candidates of an
    // ambiguous prefix.
    let looks_like_record = what.len() == 64 && what.bytes().all(|b| b.is_ascii_hexdigit());
    let as_node = if looks_like_record {
        None
    } else {
        api.get(&format!("/v1/records/{what}")).ok()
    };
    let record_id = match as_node {
        Some(answer) => {
            let record: RecordAnswer = read("GET /v1/records/{origin}", &answer)?;
            if !args.api.json {
                println!(
                    "origin {}: current record seq {}, issued {}, expires {}",
                    record.origin,
                    record.seq,
                    utc(record.issued_at_ms),
                    utc(record.expires_at_ms)
                );
            }
            record.record.to_string()
        }
        None => what.to_string(),
    };
    let (provenance, raw): (ProvenanceAnswer, Value) =
        api.get_as(&format!("/v1/provenance/{record_id}"))?;
    if args.api.json {
        return print_json(&raw);
    }
    let trace = &provenance.trace;
    println!("record      {}", trace.record);
    match &trace.evidence {
        Some(evidence) => {
            println!(
                "signed by   {} {} (signature checked with verify_strict)",
                provenance.origin_label.as_deref().unwrap_or(""),
                evidence.signer
            );
            println!("chain       seq {}, prev {}", evidence.seq, evidence.prev);
            for specialist in &evidence.specialists {
                println!("announces   {} {}", specialist.name, specialist.endpoint);
            }
        }
        None => println!("signed by   (no evidence kept for this record)"),
    }
    println!(
        "status      {}{}",
        if provenance.current {
            "current"
        } else {
            "superseded or gone"
        },
        if provenance.origin_quarantined {
            ", ORIGIN QUARANTINED"
        } else {
            ""
        }
    );
    if let Some(first) = &trace.first_receipt {
        println!(
            "first seen  {} {} (entry {})",
            utc(first.at_ms),
            first
                .peer
                .map(|peer| format!("from peer {peer}"))
                .unwrap_or_else(|| "published here".into()),
            first.index
        );
    }
    for step in &trace.history {
        println!(
            "  entry {:>6}  {:<12} {}",
            step.index,
            step.kind.to_string(),
            step.reason
        );
    }
    println!(
        "relayed to  {}",
        counted(trace.relays.len() as u64, "peer", "peers")
    );
    Ok(ExitCode::SUCCESS)
}
