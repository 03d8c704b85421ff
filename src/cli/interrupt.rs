//! Ctrl-C and SIGTERM for the commands that own them.
//!
//! `tidings run` stops its node cleanly on the first signal and exits at once on
//! a second ([`Signals`]). Commands that run for a while on scratch data (`demo`,
//! `bench`) stop within a moment of a signal wherever they are: a watcher thread
//! removes their scratch directories ([`ScratchDir`]) and exits with status 130,
//! as a shell expects of an interrupted program.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

use anyhow::Context;

/// Scratch directories to remove if the program is interrupted.
static SCRATCH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static WATCHER: Once = Once::new();

/// Work to do before exiting on a signal (stopping child processes).
type Hook = Box<dyn FnOnce() + Send>;
static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

/// Runs `hook` if the program is interrupted (for example, to stop the
/// processes it started); hooks run in the reverse order of registration.
/// Installs the signal watcher.
pub(crate) fn on_interrupt(hook: Hook) {
    exit_on_interrupt();
    HOOKS
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .push(hook);
}

/// Exit status of a program stopped by a signal (128 + SIGINT).
pub(crate) const INTERRUPTED: i32 = 130;

fn scratch() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    SCRATCH.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn remove_all_scratch() {
    for path in scratch().drain(..) {
        // Background writers may still add files for a moment: retry briefly.
        for _ in 0..20 {
            if std::fs::remove_dir_all(&path).is_ok() || !path.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Makes Ctrl-C and SIGTERM end the program at once, removing every scratch
/// directory first. Idempotent.
pub(crate) fn exit_on_interrupt() {
    WATCHER.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("tidings-interrupt".into())
            .spawn(|| {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                let signal = runtime.block_on(async {
                    let Ok(mut signals) = Signals::install() else {
                        return None;
                    };
                    Some(signals.next().await)
                });
                if let Some(signal) = signal {
                    eprintln!("\n{signal}: stopping");
                    let hooks =
                        std::mem::take(&mut *HOOKS.lock().unwrap_or_else(|p| p.into_inner()));
                    // Last registered, first run: what was made last (processes
                    // inside namespaces) goes before what it depends on.
                    for hook in hooks.into_iter().rev() {
                        hook();
                    }
                    remove_all_scratch();
                    std::process::exit(INTERRUPTED);
                }
            });
        if let Err(error) = spawned {
            eprintln!("warning: cannot watch for Ctrl-C: {error}");
        }
    });
}

/// A temporary directory, removed when dropped and when the program is
/// interrupted.
#[derive(Debug)]
pub(crate) struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `TMPDIR/tidings-LABEL-PID`, empty.
    pub(crate) fn new(label: &str) -> anyhow::Result<Self> {
        exit_on_interrupt();
        let path = std::env::temp_dir().join(format!("tidings-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        scratch().push(path.clone());
        Ok(Self { path })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory after a normal end (it is still removed if the
    /// program is interrupted before then).
    pub(crate) fn keep(self) -> PathBuf {
        scratch().retain(|path| path != &self.path);
        let path = self.path.clone();
        std::mem::forget(self);
        path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        scratch().retain(|path| path != &self.path);
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, listened to from the moment of installation, so
/// a signal that arrives while the program is busy is not lost.
pub(crate) struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts listening (within a tokio runtime).
    pub(crate) fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
                interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The next signal, by name.
    pub(crate) async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => "SIGTERM",
                _ = self.interrupt.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
