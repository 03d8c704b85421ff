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

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use tidings::api::answers::{EventKind, MembersAnswer, WatchEvent};
use tidings::keys::NodeId;

use super::client::{capabilities, read, Api, ApiArgs};
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
        if !response.status().is_success() {
            return Err(super::client::refused(response));
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
                    let event: WatchEvent = read("an event of GET /v1/watch", &value)?;
                    if let Some(origin) = &event.origin {
                        labels.learn(&api, origin);
                    }
                    writeln!(out, "{}", describe(&event, &labels))?;
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
    by_id: BTreeMap<NodeId, Option<String>>,
}

impl Labels {
    fn learn(&mut self, api: &Api, origin: &NodeId) {
        if self.by_id.contains_key(origin) {
            return;
        }
        if let Ok((members, _)) = api.get_as::<MembersAnswer>("/v1/members") {
            for member in members.members {
                self.by_id.insert(member.id, member.label);
            }
        }
        // Remember misses too, so an origin outside the roster costs one
        // request, not one per event.
        self.by_id.entry(*origin).or_default();
    }

    /// `label (id prefix)`, or the full id when no label is known.
    fn name(&self, origin: &NodeId) -> String {
        match self.by_id.get(origin).and_then(Option::as_deref) {
            Some(label) if !label.is_empty() => format!("{label} ({})", origin.short()),
            _ => origin.to_string(),
        }
    }
}

/// One line for an event: time, kind, what and whose.
fn describe(event: &WatchEvent, labels: &Labels) -> String {
    let at = utc(event.at_ms);
    let kind = event.event.as_str();
    let origin = event
        .origin
        .map(|origin| labels.name(&origin))
        .unwrap_or_default();
    let seq = event
        .seq
        .map_or_else(|| "-".to_string(), |seq| seq.to_string());
    let what = match (event.event, &event.specialist) {
        (EventKind::Added | EventKind::Updated | EventKind::Removed, Some(specialist)) => {
            format!(
                "{} [{}] {} from {origin}, seq {seq}",
                specialist.name,
                capabilities(specialist),
                specialist.endpoint,
            )
        }
        (EventKind::Expired, _) => format!("{origin}'s record seq {seq} expired"),
        (EventKind::Quarantined, _) => format!("{origin} QUARANTINED (signed two histories)"),
        (EventKind::LeftRoster, _) => format!("{origin} left the roster"),
        (EventKind::Pardoned, _) => format!("{origin} pardoned above seq {seq}"),
        (EventKind::Reset, _) => format!(
            "events were missed ({}); reload the directory (tidings lookup)",
            event.reason.as_deref().unwrap_or("no reason given")
        ),
        (_, None) => format!("{origin}, seq {seq}"),
    };
    format!("{at}  {kind:<11} {what}")
}
