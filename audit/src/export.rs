//! Exports: a log as JSON lines that anyone can verify offline, and merging the
//! exports of several nodes to see how a record spread.
//!
//! ```text
//! {"type":"header","format":"tidings-audit-export/1","node":…,"federation":…,"base_index":0,"base_hash":…}
//! {"type":"checkpoint","node":…,"index":1024,"head":…,"at_ms":…,"signature":…}
//! {"type":"entry","index":1,"at_ms":…,"kind":"accepted","peer":…,"origin":…,"record":…,"reason":…,"hash":…}
//! {"type":"evidence","record":…,"bytes":"<hex of the signed record>"}
//! ```
//!
//! Verification needs only the file and, to pin it, the node's id: the chain is
//! recomputed from the signed base, every checkpoint signature is checked, and the
//! first bad line is named by its entry index.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};
use tidings_keys::{FederationId, NodeId};

use crate::checkpoint::Checkpoint;
use crate::entry::{hex32, Entry, EntryKind, RecordKey, MAX_EVIDENCE_BYTES};
use crate::log::{AuditError, AuditLog};
use crate::store::Store;
use crate::verify::{ChainCheck, EvidenceCheck, Problem, Verified};

/// The format name in the header.
pub const FORMAT: &str = "tidings-audit-export/1";

/// Longest line read back (evidence is hex, so twice its limit, plus framing).
pub const MAX_LINE_BYTES: usize = 2 * MAX_EVIDENCE_BYTES + 4096;

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    /// Who wrote the log, and where the chain starts.
    Header {
        /// [`FORMAT`].
        format: String,
        /// The node.
        node: NodeId,
        /// Its federation (checkpoints are signed for it).
        federation: FederationId,
        /// Index before the first entry.
        base_index: u64,
        /// Chain hash at the base.
        #[serde(with = "hex32")]
        base_hash: [u8; 32],
    },
    /// A signed checkpoint.
    Checkpoint(Checkpoint),
    /// An entry.
    Entry(Entry),
    /// Signed evidence for a record.
    Evidence {
        /// The record id.
        record: RecordKey,
        /// The signed bytes, hex.
        bytes: String,
    },
}

/// Counts of what an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    /// Entries written.
    pub entries: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Evidence records written.
    pub evidence: u64,
}

fn write_line(out: &mut impl Write, line: &Line) -> io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")
}

/// Writes the whole log as JSON lines.
pub fn export<S: Store>(
    log: &AuditLog<S>,
    out: &mut impl Write,
) -> Result<ExportSummary, ExportError> {
    let (base_index, base_hash) = log.base();
    write_line(
        out,
        &Line::Header {
            format: FORMAT.into(),
            node: log.node(),
            federation: log.federation(),
            base_index,
            base_hash,
        },
    )?;
    let mut summary = ExportSummary::default();
    for checkpoint in log.checkpoints()? {
        write_line(out, &Line::Checkpoint(checkpoint))?;
        summary.checkpoints += 1;
    }
    // From the start: entries kept below the base come first.
    let mut after = 0;
    loop {
        let page = log.query(&crate::log::Query {
            after_index: after,
            limit: 4096,
            ..Default::default()
        })?;
        for entry in &page {
            write_line(out, &Line::Entry(entry.clone()))?;
            summary.entries += 1;
        }
        match page.last() {
            Some(last) if page.len() == 4096 => after = last.index,
            _ => break,
        }
    }
    for record in log.evidence_keys()? {
        if let Some(bytes) = log.evidence(&record)? {
            let bytes = tidings_keys::hex::encode(&bytes);
            write_line(out, &Line::Evidence { record, bytes })?;
            summary.evidence += 1;
        }
    }
    Ok(summary)
}

/// Why an export could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A line is not part of an export.
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

/// An export read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadExport {
    /// The writing node.
    pub node: NodeId,
    /// Its federation.
    pub federation: FederationId,
    /// Where the chain starts.
    pub base: (u64, [u8; 32]),
    /// Checkpoints, in file order.
    pub checkpoints: Vec<Checkpoint>,
    /// Entries, in file order.
    pub entries: Vec<Entry>,
    /// Evidence by record.
    pub evidence: BTreeMap<RecordKey, Vec<u8>>,
}

fn read_line<R: BufRead>(reader: &mut R, buffer: &mut Vec<u8>) -> io::Result<usize> {
    buffer.clear();
    let mut limited = io::Read::take(reader, MAX_LINE_BYTES as u64 + 1);
    limited.read_until(b'\n', buffer)
}

/// Reads an export, line by line, with every line bounded.
pub fn read_export(mut reader: impl BufRead) -> Result<ReadExport, ExportError> {
    let mut buffer = Vec::new();
    let mut header = None;
    let mut export = ReadExport {
        node: NodeId::from_bytes([0; 32]),
        federation: FederationId::from_bytes([0; 32]),
        base: (0, [0; 32]),
        checkpoints: Vec::new(),
        entries: Vec::new(),
        evidence: BTreeMap::new(),
    };
    let mut number = 0;
    loop {
        number += 1;
        let bad = |reason: String| ExportError::Line {
            line: number,
            reason,
        };
        if read_line(&mut reader, &mut buffer)? == 0 {
            break;
        }
        if buffer.len() > MAX_LINE_BYTES {
            return Err(bad(format!("longer than {MAX_LINE_BYTES} bytes")));
        }
        if buffer.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line: Line = serde_json::from_slice(&buffer).map_err(|error| bad(error.to_string()))?;
        match line {
            Line::Header {
                format,
                node,
                federation,
                base_index,
                base_hash,
            } => {
                if format != FORMAT || header.is_some() {
                    return Err(bad(format!("unexpected header (format {format:?})")));
                }
                header = Some(());
                export.node = node;
                export.federation = federation;
                export.base = (base_index, base_hash);
            }
            _ if header.is_none() => return Err(bad("the first line must be the header".into())),
            Line::Checkpoint(checkpoint) => export.checkpoints.push(checkpoint),
            Line::Entry(entry) => export.entries.push(entry),
            Line::Evidence { record, bytes } => {
                let decoded =
                    decode_hex(&bytes).ok_or_else(|| bad("evidence is not hex".into()))?;
                export.evidence.insert(record, decoded);
            }
        }
    }
    if header.is_none() {
        return Err(ExportError::Line {
            line: 1,
            reason: "empty export (no header)".into(),
        });
    }
    Ok(export)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 2 * MAX_EVIDENCE_BYTES {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

impl ReadExport {
    /// Verifies the chain and checkpoints, in file order. With `expected_node`,
    /// the export must be that node's.
    pub fn verify(&self, expected_node: Option<&NodeId>) -> Result<Verified, Problem> {
        if let Some(expected) = expected_node {
            if *expected != self.node {
                return Err(Problem::ForeignCheckpoint {
                    index: self.base.0,
                    signer: self.node,
                });
            }
        }
        let mut checkpoints = self.checkpoints.clone();
        checkpoints.sort_by_key(|checkpoint| checkpoint.index);
        let mut check = ChainCheck::new(self.node, &self.federation, self.base, &checkpoints)?;
        for entry in &self.entries {
            check.push(entry)?;
        }
        check.finish()
    }
}

impl ReadExport {
    /// Checks the evidence with `check` (see [`crate::verify::check_evidence`]):
    /// each evidence line is the record its key names, signed; each entry that
    /// should have evidence has it, signed by the origin it names.
    pub fn check_evidence(&self, check: EvidenceCheck<'_>) -> Result<u64, Problem> {
        let stored: Vec<RecordKey> = self.evidence.keys().copied().collect();
        crate::verify::check_evidence(
            &self.entries,
            &stored,
            &|record| self.evidence.get(record).cloned(),
            check,
        )
    }
}

/// One node's first receipt of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The node whose export this is.
    pub node: NodeId,
    /// When it accepted (or published) the record.
    pub at_ms: u64,
    /// The peer it came from (`None`: it published the record itself).
    pub from: Option<NodeId>,
    /// Accepted or published.
    pub kind: EntryKind,
}

/// How a record reached each node, from several nodes' exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spread {
    /// The record.
    pub record: RecordKey,
    /// The signer, proven by the evidence's signature (`None`: no export holds
    /// checked evidence of the record).
    pub origin: Option<NodeId>,
    /// First receipt per node, earliest first.
    pub receipts: Vec<Receipt>,
    /// Nodes whose exports show no receipt.
    pub missing: Vec<NodeId>,
}

/// Reconstructs how `record` spread across the nodes of `exports`. `signer` is
/// the key whose signature the record's evidence carries, as the caller checked it
/// (the entries' own claim is not taken: an export could name anyone).
pub fn spread(exports: &[ReadExport], record: RecordKey, signer: Option<NodeId>) -> Spread {
    let mut receipts = Vec::new();
    let mut missing = Vec::new();
    for export in exports {
        let first = export.entries.iter().find(|entry| {
            entry.record == Some(record)
                && matches!(entry.kind, EntryKind::Accepted | EntryKind::Published)
        });
        match first {
            Some(entry) => {
                receipts.push(Receipt {
                    node: export.node,
                    at_ms: entry.at_ms,
                    from: if entry.kind == EntryKind::Published {
                        None
                    } else {
                        entry.peer
                    },
                    kind: entry.kind,
                });
            }
            None => missing.push(export.node),
        }
    }
    receipts.sort_by_key(|receipt| (receipt.at_ms, receipt.node));
    Spread {
        record,
        origin: signer,
        receipts,
        missing,
    }
}

impl Spread {
    /// The spread as a tree: each node under the peer it got the record from.
    pub fn render(&self, name: &dyn Fn(&NodeId) -> String, time: &dyn Fn(u64) -> String) -> String {
        let mut out = format!("record {}", self.record);
        if let Some(origin) = &self.origin {
            out.push_str(&format!(" signed by {}", name(origin)));
        }
        out.push('\n');
        let known: Vec<NodeId> = self.receipts.iter().map(|receipt| receipt.node).collect();
        // Roots: receipts with no sender (published), and senders without an export.
        let mut roots: Vec<(Option<NodeId>, Vec<&Receipt>)> = Vec::new();
        for receipt in &self.receipts {
            match receipt.from {
                None => roots.push((None, vec![receipt])),
                Some(from) if !known.contains(&from) => {
                    match roots.iter_mut().find(|(peer, _)| *peer == Some(from)) {
                        Some((_, children)) => children.push(receipt),
                        None => roots.push((Some(from), vec![receipt])),
                    }
                }
                Some(_) => {}
            }
        }
        for (index, (peer, receipts)) in roots.iter().enumerate() {
            let last = index + 1 == roots.len();
            match peer {
                Some(peer) => {
                    out.push_str(&format!(
                        "{} {} (no export)\n",
                        if last { "└─" } else { "├─" },
                        name(peer)
                    ));
                    let prefix = if last { "   " } else { "│  " };
                    for (position, receipt) in receipts.iter().enumerate() {
                        self.render_node(
                            receipt,
                            prefix,
                            position + 1 == receipts.len(),
                            name,
                            time,
                            &mut out,
                        );
                    }
                }
                None => {
                    for receipt in receipts {
                        self.render_node(receipt, "", last, name, time, &mut out);
                    }
                }
            }
        }
        for node in &self.missing {
            out.push_str(&format!("never received by {}\n", name(node)));
        }
        out
    }

    fn render_node(
        &self,
        receipt: &Receipt,
        prefix: &str,
        last: bool,
        name: &dyn Fn(&NodeId) -> String,
        time: &dyn Fn(u64) -> String,
        out: &mut String,
    ) {
        let branch = if last { "└─" } else { "├─" };
        let how = match receipt.from {
            None => "published".to_string(),
            Some(from) => format!("accepted from {}", name(&from)),
        };
        out.push_str(&format!(
            "{prefix}{branch} {} {how} at {}\n",
            name(&receipt.node),
            time(receipt.at_ms)
        ));
        let children: Vec<&Receipt> = self
            .receipts
            .iter()
            .filter(|child| child.from == Some(receipt.node))
            .collect();
        let inner = format!("{prefix}{}", if last { "   " } else { "│  " });
        for (index, child) in children.iter().enumerate() {
            self.render_node(child, &inner, index + 1 == children.len(), name, time, out);
        }
    }
}
