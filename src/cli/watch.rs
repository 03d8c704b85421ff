//! `tidings watch`: a running node's directory changes as they happen, in the
//! terminal.
//!
//! It reads the API's server-sent event stream (`GET /v1/watch`). When the
//! stream breaks (the node restarted, a network blip) it reconnects with the
//! id of the last event it printed, so nothing that the node still keeps is
//! missed; when the node cannot resume there it sends a `reset`, printed as
//! such (the directory should be reloaded: `tidings lookup`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;

use super::client::{capabilities, Api, ApiArgs};
use super::format::utc;

/// Silence longer than this means the stream is dead (the node sends a
/// keep-alive every 15 s).
const SILENCE: Duration = Duration::from_secs(45);

/// Arguments of `tidings watch`.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Start after this event id (as printed with --json, or by an earlier
    /// run): the events the node still keeps since then come first.
    #[arg(long, value_name = "EVENT_ID")]
    after: Option<String>,
    /// Stop after this many events (default: run until interrupted).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    #[command(flatten)]
    api: ApiArgs,
}

/// One server-sent event.
#[derive(Debug, Default)]
struct Sse {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

pub(crate) fn run(args: &WatchArgs) -> anyhow::Result<ExitCode> {
    let api = Api::from(&args.api)?;
    let http = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(SILENCE)
        .build()?;
    let json = Api::json(&args.api);
    let mut labels = Labels::default();
    let mut last = args.after.clone();
    let mut printed = 0u64;
    let mut connected_once = false;
    let stdout = std::io::stdout();
    loop {
        let mut request = api.authorize(http.get(format!("{}/v1/watch", api.base)));
        if let Some(id) = &last {
            request = request.header("Last-Event-ID", id);
        }
        let response = match request.send() {
            Ok(response) => response,
            Err(error) if !connected_once => {
                return Err(api.unreachable(error));
            }
            Err(_) => {
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let status = response.status();
        if !status.is_success() {
            let body: Value = response.json().unwrap_or(Value::Null);
            bail!(
                "the node answered {status}: {}",
                body["detail"].as_str().unwrap_or("no details")
            );
        }
        if !connected_once && !json {
            eprintln!("watching {} (Ctrl-C to stop)", api.base);
        } else if connected_once && !json {
            eprintln!("(reconnected)");
        }
        connected_once = true;
        let mut reader = BufReader::new(response);
        let mut event = Sse::default();
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                let done = std::mem::take(&mut event);
                if done.data.is_empty() {
                    continue;
                }
                if done.id.is_some() {
                    last = done.id.clone();
                }
                let mut value: Value =
                    serde_json::from_str(&done.data).context("an event that is not JSON")?;
                let mut out = stdout.lock();
                if json {
                    if let (Some(object), Some(id)) = (value.as_object_mut(), &done.id) {
                        object.insert("id".into(), Value::from(id.clone()));
                    }
                    writeln!(out, "{value}")?;
                } else {
                    if value["origin"].is_string() {
                        labels.learn(&api, &value["origin"]);
                    }
                    writeln!(out, "{}", describe(&value, &labels))?;
                }
                out.flush()?;
                printed += 1;
                if args.count.is_some_and(|count| printed >= count) {
                    return Ok(ExitCode::SUCCESS);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => event.id = Some(value.to_string()),
                "event" => event.event = Some(value.to_string()),
                "data" => {
                    if !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                }
                _ => {}
            }
        }
        if !json {
            eprintln!(
                "(the stream from {} ended; reconnecting after event {})",
                api.base,
                last.as_deref().unwrap_or("none")
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Roster labels of origins, read from the node's members once and again when
/// an unknown origin shows up.
#[derive(Debug, Default)]
struct Labels {
    by_id: BTreeMap<String, String>,
}

impl Labels {
    fn learn(&mut self, api: &Api, origin: &Value) {
        let Some(origin) = origin.as_str() else {
            return;
        };
        if self.by_id.contains_key(origin) {
            return;
        }
        if let Ok(members) = api.get("/v1/members") {
            for member in members["members"].as_array().into_iter().flatten() {
                if let (Some(id), Some(label)) = (member["id"].as_str(), member["label"].as_str()) {
                    self.by_id.insert(id.to_string(), label.to_string());
                }
            }
        }
        // Remember misses too, so an origin outside the roster costs one
        // request, not one per event.
        self.by_id.entry(origin.to_string()).or_default();
    }

    /// `label (id prefix)`, or the full id when no label is known.
    fn name(&self, origin: &str) -> String {
        match self.by_id.get(origin).filter(|label| !label.is_empty()) {
            Some(label) => format!("{label} ({})", &origin[..origin.len().min(10)]),
            None => origin.to_string(),
        }
    }
}

/// One line for an event: time, kind, what and whose.
fn describe(event: &Value, labels: &Labels) -> String {
    let at = utc(event["at_ms"].as_u64().unwrap_or(0));
    let kind = event["event"].as_str().unwrap_or("?");
    let origin = event["origin"]
        .as_str()
        .map(|origin| labels.name(origin))
        .unwrap_or_default();
    let what = match kind {
        "added" | "updated" | "removed" => {
            let specialist = &event["specialist"];
            format!(
                "{} [{}] {} from {origin}, seq {}",
                specialist["name"].as_str().unwrap_or("-"),
                capabilities(specialist),
                specialist["endpoint"].as_str().unwrap_or("-"),
                event["seq"]
            )
        }
        "expired" => format!("{origin}'s record seq {} expired", event["seq"]),
        "quarantined" => format!("{origin} QUARANTINED (signed two histories)"),
        "left_roster" => format!("{origin} left the roster"),
        "pardoned" => format!("{origin} pardoned above seq {}", event["seq"]),
        "reset" => format!(
            "events were missed ({}); reload the directory (tidings lookup)",
            event["reason"].as_str().unwrap_or("no reason given")
        ),
        _ => event.to_string(),
    };
    format!("{at}  {kind:<11} {what}")
}
