//! The archiver's heavy work — compressing a segment, putting it in the
//! store, reading it back to verify — at a lower scheduling priority than
//! the volume's users. On a machine with few cores zstd otherwise takes a
//! core from the writes and fsyncs it archives (measured on 2 cores, a
//! 2 GiB sequential write, builds alternating: median 424 MiB/s with the
//! compression at the users' priority, 448 at nice 10, 10 of 12 pairs
//! faster). Only work that neither takes a lock the writer needs nor
//! stands between a waiting write and its space runs there: shipping a
//! sealed segment and a partial object. A retire (copy forward under the
//! writer's lock, store what shipping has not) stays at the archiver's
//! priority.
//!
//! Linux gives each thread its own nice value and a thread starts with its
//! creator's, so the compression threads `encode` spawns inherit it.

use std::sync::Mutex;

/// The nice value of the archiver's background work: a tenth of a core's
/// share against work at the default priority, the whole of an idle one.
pub const NICE: i32 = 10;

/// Runs `work` on a thread of its own at nice [`NICE`] and waits for it. A
/// panic in `work` goes on in the caller. If the priority cannot be lowered
/// or the thread cannot be started, the work runs all the same, at the
/// caller's priority.
pub fn run<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    let work = Mutex::new(Some(work));
    let take = || work.lock().unwrap_or_else(|p| p.into_inner()).take();
    let started = std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("lsvfs-archiving".into())
            .spawn_scoped(scope, || {
                lower_priority();
                take().map(|w| w())
            });
        match thread {
            Ok(t) => t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Err(e) => {
                log::warn!("cannot start the archiver's background thread: {e}");
                None
            }
        }
    });
    match started {
        Some(answer) => answer,
        None => take().expect("no thread took the work")(),
    }
}

/// The calling thread's nice value.
fn nice() -> i32 {
    // SAFETY: a plain system call on the calling thread's id; it returns
    // the nice value (-1 is one too, so errors are not told apart).
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

/// Sets the calling thread's nice value to [`NICE`], unless it is at a
/// lower priority already (a daemon started under `nice 19` keeps 19: a
/// privileged one could otherwise raise its archiving above it).
fn lower_priority() {
    if nice() >= NICE {
        return;
    }
    // SAFETY: a plain system call on the calling thread's id.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICE) };
    if r != 0 {
        log::debug!(
            "cannot lower the archiver's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{NICE, nice, run};

    #[test]
    fn work_runs_at_the_lower_priority_and_the_caller_keeps_its_own() {
        let caller = nice();
        // Under `nice 19` (a build beside other work) the work stays there.
        let expected = caller.max(NICE);
        let (inside, spawned) = run(|| (nice(), std::thread::spawn(nice).join().unwrap()));
        assert_eq!(inside, expected);
        assert_eq!(spawned, expected, "threads the work starts inherit it");
        assert_eq!(nice(), caller);
    }

    #[test]
    fn a_process_at_a_lower_priority_already_is_not_raised() {
        let (before, after) = run(|| {
            // SAFETY: as in lower_priority, on this scoped thread only.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) };
            let before = nice();
            super::lower_priority();
            (before, nice())
        });
        assert_eq!(before, 19);
        assert_eq!(after, 19, "lowering the priority raised it");
    }

    #[test]
    fn a_panic_in_the_work_reaches_the_caller() {
        let r = std::panic::catch_unwind(|| run(|| panic!("boom")));
        let p = r.expect_err("the panic is lost");
        assert_eq!(p.downcast_ref::<&str>(), Some(&"boom"));
    }
}
