//! Progress bars for what can take more than a couple of seconds (recovery
//! and view building at mount, the archiver draining at unmount). Drawn on
//! stderr only when it is a terminal and the command is not quiet, and only
//! once the operation has lasted a moment: never in piped or --json output.

use indicatif::{ProgressBar, ProgressStyle};
use std::cell::OnceCell;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// An operation shorter than this never shows a bar.
const SHOW_AFTER: Duration = Duration::from_millis(800);

/// Called once at start: bars only on a terminal, and not with -q.
pub fn enable(quiet: bool) {
    ENABLED.store(!quiet && std::io::stderr().is_terminal(), Ordering::Relaxed);
}

/// A bar counting `unit`s, shown once its operation is slow.
pub struct Bar {
    message: String,
    unit: &'static str,
    start: Instant,
    bar: OnceCell<ProgressBar>,
}

impl Bar {
    pub fn new(message: impl Into<String>, unit: &'static str) -> Bar {
        Bar {
            message: message.into(),
            unit,
            start: Instant::now(),
            bar: OnceCell::new(),
        }
    }

    /// `done` of `total` units so far.
    pub fn set(&self, done: u64, total: u64) {
        if !ENABLED.load(Ordering::Relaxed) {
            return;
        }
        if self.bar.get().is_none() && self.start.elapsed() < SHOW_AFTER {
            return;
        }
        let bar = self.bar.get_or_init(|| {
            let template = format!(
                "{{msg}} [{{bar:30}}] {{pos}}/{{len}} {} ({{elapsed}})",
                self.unit
            );
            let style = ProgressStyle::with_template(&template)
                .expect("a valid template")
                .progress_chars("=> ");
            let bar = ProgressBar::new(total).with_style(style);
            bar.set_message(self.message.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        bar.set_length(total);
        bar.set_position(done);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}
