//! `tidings keygen` and `tidings id`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use rand::rngs::OsRng;
use tidings::keys::Identity;

use crate::KeyArg;

/// Arguments of `tidings keygen`.
#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    #[command(flatten)]
    key: KeyArg,
    /// Replace an existing key file (the old identity is lost).
    #[arg(long)]
    force: bool,
    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `tidings id`.
#[derive(Debug, Args)]
pub(crate) struct IdArgs {
    #[command(flatten)]
    key: KeyArg,
    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let identity = Identity::generate(&mut OsRng);
    identity.save(&args.key.key, args.force)?;
    let node_id = identity.node_id();
    if args.json {
        let value = serde_json::json!({ "node_id": node_id, "key": args.key.key });
        println!("{value}");
    } else {
        println!(
            "wrote {} (mode 0600; keep it private)",
            args.key.key.display()
        );
        println!("node id: {node_id}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn id(args: &IdArgs) -> anyhow::Result<ExitCode> {
    let identity = Identity::load(&args.key.key)
        .with_context(|| "cannot read the node key (create one with `tidings keygen`)")?;
    let node_id = identity.node_id();
    if args.json {
        println!("{}", serde_json::json!({ "node_id": node_id }));
    } else {
        println!("{node_id}");
    }
    Ok(ExitCode::SUCCESS)
}
