//! `tidings completions` and `tidings man`: shell completions and manual pages,
//! generated from the command definitions, so they never drift from `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

/// Arguments of `tidings completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

/// Arguments of `tidings man`.
#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Write tidings.1 and one page per command (tidings-run.1, …) into this
    /// directory instead of printing tidings.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell` of `command`.
pub(crate) fn completions(
    mut command: clap::Command,
    args: &CompletionsArgs,
) -> anyhow::Result<ExitCode> {
    let name = command.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, name, &mut script);
    print(&script)
}

/// Writes `bytes` to standard output; a reader that stopped early (`| head`)
/// ends the program quietly, as SIGPIPE would.
fn print(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::from(141)),
        Err(error) => Err(error.into()),
    }
}

/// Prints the manual page of `command`, or writes every page into a directory.
pub(crate) fn man(command: clap::Command, args: &ManArgs) -> anyhow::Result<ExitCode> {
    let Some(dir) = &args.dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        return print(&page);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    write_pages(command, dir, &mut written)?;
    for path in &written {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the page of `command` and of each of its subcommands (named
/// `parent-child`, as `man tidings-roster-propose` expects).
fn write_pages(
    command: clap::Command,
    dir: &std::path::Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let command = command.disable_help_subcommand(true);
    let name = command.get_name().to_string();
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in command.get_subcommands() {
        let sub = sub.clone().name(format!("{name}-{}", sub.get_name()));
        write_pages(sub, dir, written)?;
    }
    Ok(())
}
