//! Freeze and thaw of a live mount. While frozen, every request that
//! would change the volume is parked — its reply kept for later, no
//! request thread held — so reads, listings and the control files go on
//! being served; the changes in flight when the freeze began complete
//! before it is reported frozen. Thaw runs the parked changes in the order
//! they came. A freeze ends by itself at its deadline, so a lost agent
//! never holds an application for good; the log says so, and so does
//! `.lsvfs/status`.

pub use crate::status::FreezeStatus;
use crate::sync::lock;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A change waiting for the thaw.
pub type Parked = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    /// Until when the mount is frozen; `None` when thawed.
    until: Option<Instant>,
    /// Counts freezes, so that a deadline thaws only its own.
    generation: u64,
    in_flight: u64,
    parked: Vec<Parked>,
    last: Option<String>,
}

#[derive(Default)]
pub struct Gate {
    state: Mutex<State>,
    idle: Condvar,
}

/// How a change may go on.
pub enum Admission<'a> {
    /// Now; the pass counts it as in flight until dropped.
    Now(Pass<'a>),
    /// Later: park it.
    Frozen(Parker<'a>),
}

pub struct Pass<'a>(&'a Gate);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let mut s = lock(&self.0.state);
        s.in_flight -= 1;
        if s.in_flight == 0 {
            self.0.idle.notify_all();
        }
    }
}

pub struct Parker<'a>(&'a Gate);

impl Parker<'_> {
    /// Parks `op` until the thaw, or runs it now if the thaw came since.
    pub fn park(self, op: Parked) {
        let mut s = lock(&self.0.state);
        if s.until.is_some() {
            s.parked.push(op);
            return;
        }
        s.in_flight += 1;
        drop(s);
        let _pass = Pass(self.0);
        op();
    }
}

impl Gate {
    /// Asks to make a change.
    pub fn enter(&self) -> Admission<'_> {
        let mut s = lock(&self.state);
        if s.until.is_some() {
            return Admission::Frozen(Parker(self));
        }
        s.in_flight += 1;
        Admission::Now(Pass(self))
    }

    /// Freezes for at most `timeout` (a freeze in force is extended) and
    /// returns once no change is in flight, with the deadline. A thread
    /// thaws at the deadline unless a thaw or a newer freeze came first.
    pub fn freeze(self: &Arc<Self>, timeout: Duration) -> Instant {
        let until = Instant::now() + timeout;
        let mut s = lock(&self.state);
        s.until = Some(until);
        s.generation += 1;
        let generation = s.generation;
        while s.in_flight > 0 {
            s = self.idle.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        drop(s);
        let gate = self.clone();
        let spawned = std::thread::Builder::new()
            .name("lsvfs-thaw".into())
            .spawn(move || {
                std::thread::sleep(timeout);
                let due = {
                    let s = lock(&gate.state);
                    s.generation == generation && s.until.is_some()
                };
                if due {
                    let secs = timeout.as_secs_f64();
                    log::warn!("freeze timed out after {secs:.0} s: thawing");
                    gate.thaw(format!("timed out after {secs:.0} s"));
                }
            });
        if let Err(e) = spawned {
            log::error!("cannot start the freeze's timer, thawing now: {e}");
            self.thaw("was thawed: no timer".into());
        }
        until
    }

    /// Thaws: runs the parked changes in the order they came, and returns
    /// how many. Changes that come meanwhile are parked behind them, so
    /// none overtakes an older one; the gate opens once none is left.
    pub fn thaw(&self, how: String) -> usize {
        let mut n = 0;
        loop {
            let parked = {
                let mut s = lock(&self.state);
                if s.until.is_none() {
                    return n;
                }
                if s.parked.is_empty() {
                    s.until = None;
                    s.last = Some(how);
                    return n;
                }
                std::mem::take(&mut s.parked)
            };
            n += parked.len();
            for op in parked {
                lock(&self.state).in_flight += 1;
                let _pass = Pass(self);
                op();
            }
        }
    }

    pub fn status(&self) -> FreezeStatus {
        let s = lock(&self.state);
        FreezeStatus {
            frozen: s.until.is_some(),
            thaws_in_s: s
                .until
                .map(|u| u.saturating_duration_since(Instant::now()).as_secs_f64()),
            parked: s.parked.len() as u64,
            last: s.last.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn changes_wait_for_the_thaw_in_order_and_the_deadline_thaws() {
        let gate = Arc::new(Gate::default());
        let done = Arc::new(Mutex::new(Vec::new()));
        gate.freeze(Duration::from_secs(60));
        for i in 0..3 {
            let d = done.clone();
            match gate.enter() {
                Admission::Frozen(p) => p.park(Box::new(move || lock(&d).push(i))),
                Admission::Now(_) => panic!("a change went through a freeze"),
            }
        }
        assert!(lock(&done).is_empty());
        assert_eq!(gate.status().parked, 3);
        // A change that comes while the thaw runs the parked ones waits
        // behind them.
        let (g, d) = (gate.clone(), done.clone());
        if let Admission::Frozen(p) = gate.enter() {
            p.park(Box::new(move || {
                let late = d.clone();
                match g.enter() {
                    Admission::Frozen(p) => p.park(Box::new(move || lock(&late).push(9))),
                    Admission::Now(_) => lock(&late).push(99),
                }
                lock(&d).push(3);
            }));
        }
        assert_eq!(gate.thaw("thawed".into()), 5);
        assert_eq!(*lock(&done), [0, 1, 2, 3, 9]);
        assert!(matches!(gate.enter(), Admission::Now(_)));
        // A short freeze ends by itself, and says so.
        gate.freeze(Duration::from_millis(50));
        let ran = Arc::new(AtomicU64::new(0));
        let r = ran.clone();
        if let Admission::Frozen(p) = gate.enter() {
            p.park(Box::new(move || {
                r.fetch_add(1, Ordering::SeqCst);
            }));
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        let s = gate.status();
        assert!(!s.frozen && s.last.unwrap().starts_with("timed out"));
    }

    #[test]
    fn a_freeze_waits_for_changes_in_flight() {
        let gate = Arc::new(Gate::default());
        let Admission::Now(pass) = gate.enter() else {
            panic!("not frozen yet")
        };
        let g = gate.clone();
        let frozen = std::thread::spawn(move || {
            let start = Instant::now();
            g.freeze(Duration::from_secs(60));
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(100));
        drop(pass);
        assert!(frozen.join().unwrap() >= Duration::from_millis(90));
        gate.thaw("thawed".into());
    }
}
