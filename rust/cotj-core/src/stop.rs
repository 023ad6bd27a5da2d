//! Stopping long planning early (Ctrl-C in Python). The planner polls a [`Stop`] between DP
//! layers and between rows; the caller's check runs on the thread that made the `Stop`, at most
//! every [`Stop::PERIOD`], also while rayon threads plan the rows of a batch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use crate::error::{CotjError, Result};

/// When to stop: never, or once the caller's check returns true.
pub struct Stop<'a> {
    check: Option<&'a (dyn Fn() -> bool + Sync)>,
    owner: ThreadId,
    clock: Instant,
    /// Nanoseconds after `clock` when `check` is due next.
    due: AtomicU64,
    stopped: AtomicBool,
}

impl<'a> Stop<'a> {
    /// The shortest time between two calls of the check.
    pub const PERIOD: Duration = Duration::from_millis(20);

    /// Never stops.
    pub fn never() -> Self {
        Self::with(None)
    }

    /// Stops once `check` returns true. `check` runs only on the calling thread, and not
    /// before [`Stop::PERIOD`] has passed (short work never calls it).
    pub fn new(check: &'a (dyn Fn() -> bool + Sync)) -> Self {
        Self::with(Some(check))
    }

    fn with(check: Option<&'a (dyn Fn() -> bool + Sync)>) -> Self {
        Self {
            check,
            owner: thread::current().id(),
            clock: Instant::now(),
            due: AtomicU64::new(Self::PERIOD.as_nanos() as u64),
            stopped: AtomicBool::new(false),
        }
    }

    /// `Err(Interrupted)` once stopped. On the thread that made this `Stop`, runs the check when
    /// it is due; other threads only read the outcome.
    pub(crate) fn poll(&self) -> Result<()> {
        if self.stopped.load(Ordering::Relaxed) {
            return Err(CotjError::Interrupted);
        }
        let Some(check) = self.check else {
            return Ok(());
        };
        let now = self.clock.elapsed().as_nanos() as u64;
        if now < self.due.load(Ordering::Relaxed) || thread::current().id() != self.owner {
            return Ok(());
        }
        self.due
            .store(now + Self::PERIOD.as_nanos() as u64, Ordering::Relaxed);
        if check() {
            self.stopped.store(true, Ordering::Relaxed);
            return Err(CotjError::Interrupted);
        }
        Ok(())
    }

    /// Runs `work` (which plans on the rayon pool and polls this `Stop`) while the calling
    /// thread keeps polling, so that the check runs even though the calling thread waits.
    pub(crate) fn parallel<T: Send>(&self, work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        if self.check.is_none() || rayon::current_thread_index().is_some() {
            // Nothing to poll, or already on the pool (whose threads must not block).
            return work();
        }
        let mut out = None;
        rayon::in_place_scope(|scope| {
            let (done, wait) = channel::<()>();
            let slot = &mut out;
            scope.spawn(move |_| {
                *slot = Some(work());
                drop(done);
            });
            // Until `work` ends (its sender dropped, also by a panic, which the scope re-raises).
            while let Err(RecvTimeoutError::Timeout) = wait.recv_timeout(Self::PERIOD) {
                // An interruption is recorded in `stopped`, where the workers see it.
                let _ = self.poll();
            }
        });
        // `out` is empty only if `work` panicked, and then the scope has re-raised the panic.
        out.unwrap_or(Err(CotjError::Interrupted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_runs_on_the_calling_thread_once_due() {
        let calls = AtomicU64::new(0);
        let check = || calls.fetch_add(1, Ordering::Relaxed) >= 1;
        let stop = Stop::new(&check);
        assert!(stop.poll().is_ok());
        assert_eq!(calls.load(Ordering::Relaxed), 0, "not due yet");
        thread::sleep(Stop::PERIOD);
        thread::scope(|s| {
            s.spawn(|| assert!(stop.poll().is_ok()));
        });
        assert_eq!(
            calls.load(Ordering::Relaxed),
            0,
            "other threads never call it"
        );
        assert!(stop.poll().is_ok());
        thread::sleep(Stop::PERIOD);
        assert_eq!(stop.poll(), Err(CotjError::Interrupted));
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        thread::scope(|s| {
            s.spawn(|| assert_eq!(stop.poll(), Err(CotjError::Interrupted)));
        });
        assert!(Stop::never().poll().is_ok());
    }

    #[test]
    fn parallel_work_is_stopped_while_the_caller_waits() {
        let t0 = Instant::now();
        let check = || t0.elapsed() > Duration::from_millis(100);
        let stop = Stop::new(&check);
        let out = stop.parallel(|| loop {
            stop.poll()?;
            thread::sleep(Duration::from_millis(1));
        });
        assert_eq!(out, Err::<(), _>(CotjError::Interrupted));
        assert!(t0.elapsed() < Duration::from_secs(2));
        let calm = || false;
        assert_eq!(Stop::new(&calm).parallel(|| Ok(7)), Ok(7));
    }
}
