//! Stopping long planning early (Ctrl-C in Python). The planner polls a [`Stop`] between DP
//! layers and between rows; the caller's check runs on the thread that made the `Stop`, at most
//! every [`Stop::PERIOD`], also while rayon threads plan the rows of a batch. Polling is cheap:
//! other threads only read a flag, and the calling thread reads the clock only once the work
//! announced by its polls reaches [`WORK_PER_CLOCK`] (a short plan never reads it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::{CotjError, Result};

/// Work (edge candidates, or values checked) on the calling thread per clock read: about 0.1 ms
/// of planning with the fused kernel (a few ms in a debug build), against tens of nanoseconds for
/// a clock read.
const WORK_PER_CLOCK: u64 = 1 << 20;

/// An identity of the calling thread, cheaper to get than its `ThreadId`: the address of a
/// thread-local (unique among the threads alive, and the thread that made a `Stop` outlives it).
fn thread_mark() -> usize {
    thread_local!(static MARK: u8 = const { 0 });
    MARK.with(|m| std::ptr::from_ref(m) as usize)
}

/// When to stop: never, or once the caller's check returns true.
pub struct Stop<'a> {
    check: Option<&'a (dyn Fn() -> bool + Sync)>,
    owner: usize,
    /// Work announced so far on the owner thread, and at which total the clock is read next.
    work: AtomicU64,
    next_clock: AtomicU64,
    /// The first clock read.
    clock: OnceLock<Instant>,
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
    /// before [`Stop::PERIOD`] has passed after the first clock read (short work never calls
    /// it).
    pub fn new(check: &'a (dyn Fn() -> bool + Sync)) -> Self {
        Self::with(Some(check))
    }

    fn with(check: Option<&'a (dyn Fn() -> bool + Sync)>) -> Self {
        Self {
            check,
            owner: thread_mark(),
            work: AtomicU64::new(0),
            next_clock: AtomicU64::new(WORK_PER_CLOCK),
            clock: OnceLock::new(),
            due: AtomicU64::new(Self::PERIOD.as_nanos() as u64),
            stopped: AtomicBool::new(false),
        }
    }

    /// `Err(Interrupted)` once stopped; `work` is about how much the caller does before its next
    /// poll (edge candidates, values checked). On the thread that made this `Stop`, once the
    /// work since the last clock read reaches [`WORK_PER_CLOCK`], runs the check if it is due;
    /// other threads only read the outcome.
    pub(crate) fn poll(&self, work: usize) -> Result<()> {
        if self.stopped.load(Ordering::Relaxed) {
            return Err(CotjError::Interrupted);
        }
        if self.check.is_none() || thread_mark() != self.owner {
            return Ok(());
        }
        // Only the owner thread gets here: the counters see no contention.
        let done = self.work.fetch_add(work as u64, Ordering::Relaxed) + work as u64;
        if done < self.next_clock.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.next_clock
            .store(done + WORK_PER_CLOCK, Ordering::Relaxed);
        self.check_when_due()
    }

    /// On the owner thread: runs the check if it is due, and records a stop.
    fn check_when_due(&self) -> Result<()> {
        let Some(check) = self.check else {
            return Ok(());
        };
        let now = self.clock.get_or_init(Instant::now).elapsed().as_nanos() as u64;
        if now < self.due.load(Ordering::Relaxed) {
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
                let _ = self.check_when_due();
            }
        });
        // `out` is empty only if `work` panicked, and then the scope has re-raised the panic.
        out.unwrap_or(Err(CotjError::Interrupted))
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;

    /// Polls announcing `WORK_PER_CLOCK` in all: the last one reads the clock.
    fn polls(stop: &Stop) -> Result<()> {
        (0..4).try_for_each(|_| stop.poll(WORK_PER_CLOCK as usize / 4))
    }

    #[test]
    fn the_check_runs_on_the_calling_thread_once_due() {
        let calls = AtomicU64::new(0);
        let check = || calls.fetch_add(1, Ordering::Relaxed) >= 1;
        let stop = Stop::new(&check);
        assert!(polls(&stop).is_ok());
        assert_eq!(calls.load(Ordering::Relaxed), 0, "not due yet");
        thread::sleep(Stop::PERIOD);
        thread::scope(|s| {
            s.spawn(|| assert!(polls(&stop).is_ok()));
        });
        assert_eq!(
            calls.load(Ordering::Relaxed),
            0,
            "other threads never call it"
        );
        assert!(stop.poll(1).is_ok(), "a poll between clock reads");
        assert_eq!(calls.load(Ordering::Relaxed), 0);
        assert!(polls(&stop).is_ok());
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        thread::sleep(Stop::PERIOD);
        assert_eq!(polls(&stop), Err(CotjError::Interrupted));
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        thread::scope(|s| {
            s.spawn(|| assert_eq!(stop.poll(1), Err(CotjError::Interrupted)));
        });
        assert!(Stop::never().poll(1).is_ok());
    }

    #[test]
    fn parallel_work_is_stopped_while_the_caller_waits() {
        let t0 = Instant::now();
        let check = || t0.elapsed() > Duration::from_millis(100);
        let stop = Stop::new(&check);
        let out = stop.parallel(|| loop {
            stop.poll(1)?;
            thread::sleep(Duration::from_millis(1));
        });
        assert_eq!(out, Err::<(), _>(CotjError::Interrupted));
        assert!(t0.elapsed() < Duration::from_secs(2));
        let calm = || false;
        assert_eq!(Stop::new(&calm).parallel(|| Ok(7)), Ok(7));
    }
}
