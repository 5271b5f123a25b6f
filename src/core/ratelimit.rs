//! Rate limiting of repeated events, with counts: the decision behind the log flood guard.
//!
//! Events are grouped by a key (for logging: the callsite, one line of source code). Each key
//! has a fixed window of [`Budget::window_ms`] that opens with its first event; the first
//! [`Budget::burst`] events of a window pass, the rest are counted and suppressed. Once a window
//! that suppressed anything is over, a [`Summary`] with the count is queued, so the suppression
//! is always reported. A key emits at most `burst` events per window plus one summary.
//!
//! Driven like the rest of the core: [`RateLimiter::handle_event`] for each event,
//! [`RateLimiter::handle_timeout`] when [`RateLimiter::poll_timeout`] is reached, then
//! [`RateLimiter::poll_summary`] until it returns `None`. Time is milliseconds on a monotonic
//! clock, passed in and never decreasing; nothing here reads the clock or does I/O.
//!
//! Memory: one entry per key seen in the current window; [`RateLimiter::handle_timeout`] drops
//! the entries whose window is over. Callers keep the key space finite (callsites are).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// How many events one key may emit per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Events that pass in each window before suppression starts.
    pub burst: u32,
    /// Length of a window, from its first event.
    pub window_ms: u64,
}

/// What to do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Emit,
    /// Drop it; it is counted in the key's next [`Summary`]. `first` is true for the first
    /// suppressed event of the window: the moment to [`RateLimiter::describe`] the key.
    Suppress { first: bool },
}

/// A window that suppressed events, ready to be reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary<K, D> {
    pub key: K,
    /// What the caller attached with [`RateLimiter::describe`] in that window, if anything.
    pub detail: Option<D>,
    /// Events suppressed in the window (at least 1).
    pub suppressed: u64,
    /// When the window opened (its first event).
    pub start_ms: u64,
    /// When it closed: `start_ms + window_ms`.
    pub end_ms: u64,
}

/// One key's current window.
#[derive(Debug)]
struct Window<D> {
    start_ms: u64,
    /// Invariant: `end_ms = start_ms + budget.window_ms` of the budget the window opened with.
    end_ms: u64,
    /// Invariant: `emitted <= burst` of that budget.
    emitted: u32,
    suppressed: u64,
    detail: Option<D>,
}

impl<D> Window<D> {
    fn open(now_ms: u64, budget: Budget) -> Window<D> {
        Window {
            start_ms: now_ms,
            end_ms: now_ms.saturating_add(budget.window_ms),
            emitted: 0,
            suppressed: 0,
            detail: None,
        }
    }
}

/// Per-key fixed-window counters and the queue of summaries not yet polled.
#[derive(Debug)]
pub struct RateLimiter<K, D> {
    windows: HashMap<K, Window<D>>,
    ready: VecDeque<Summary<K, D>>,
}

impl<K: Hash + Eq + Clone, D> Default for RateLimiter<K, D> {
    fn default() -> Self {
        RateLimiter { windows: HashMap::new(), ready: VecDeque::new() }
    }
}

impl<K: Hash + Eq + Clone, D> RateLimiter<K, D> {
    pub fn new() -> Self {
        Self::default()
    }

    /// One event for `key` at `now_ms`: emit it or count it. A window that is over is closed
    /// first (its summary queued) and a new one opened with `budget`.
    pub fn handle_event(&mut self, now_ms: u64, key: &K, budget: Budget) -> Verdict {
        let w = match self.windows.get_mut(key) {
            Some(w) => {
                if now_ms >= w.end_ms {
                    let old = std::mem::replace(w, Window::open(now_ms, budget));
                    Self::close(&mut self.ready, key.clone(), old);
                }
                w
            }
            None => self.windows.entry(key.clone()).or_insert_with(|| Window::open(now_ms, budget)),
        };
        if w.emitted < budget.burst {
            w.emitted += 1;
            return Verdict::Emit;
        }
        w.suppressed += 1;
        Verdict::Suppress { first: w.suppressed == 1 }
    }

    /// Attaches `detail` to `key`'s current window (the first one given wins); it comes back
    /// in the window's [`Summary`]. Kept apart from [`Self::handle_event`] so a caller can
    /// build it without holding whatever lock guards the limiter.
    pub fn describe(&mut self, key: &K, detail: D) {
        if let Some(w) = self.windows.get_mut(key)
            && w.detail.is_none()
        {
            w.detail = Some(detail);
        }
    }

    /// When [`Self::handle_timeout`] next has a summary to queue: the earliest end of a window
    /// that suppressed something. `None`: no summary is pending.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.windows.values().filter(|w| w.suppressed > 0).map(|w| w.end_ms).min()
    }

    /// Closes every window that is over at `now_ms`: queues a summary for each that
    /// suppressed events and forgets the rest.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let over: Vec<K> = self
            .windows
            .iter()
            .filter(|(_, w)| now_ms >= w.end_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for key in over {
            if let Some(w) = self.windows.remove(&key) {
                Self::close(&mut self.ready, key, w);
            }
        }
    }

    /// The next queued summary, oldest first.
    pub fn poll_summary(&mut self) -> Option<Summary<K, D>> {
        self.ready.pop_front()
    }

    fn close(ready: &mut VecDeque<Summary<K, D>>, key: K, w: Window<D>) {
        if w.suppressed > 0 {
            ready.push_back(Summary {
                key,
                detail: w.detail,
                suppressed: w.suppressed,
                start_ms: w.start_ms,
                end_ms: w.end_ms,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Budget = Budget { burst: 10, window_ms: 10_000 };

    fn drain(rl: &mut RateLimiter<&'static str, String>) -> Vec<Summary<&'static str, String>> {
        std::iter::from_fn(|| rl.poll_summary()).collect()
    }

    #[test]
    fn burst_passes_then_suppresses_then_reports_the_count() {
        let mut rl = RateLimiter::new();
        let mut emitted = 0;
        let mut firsts = 0;
        // 1000 events over 5 s of simulated time, one every 5 ms.
        for i in 0..1000u64 {
            match rl.handle_event(1_000 + i * 5, &"site", B) {
                Verdict::Emit => emitted += 1,
                Verdict::Suppress { first } => {
                    if first {
                        firsts += 1;
                        rl.describe(&"site", "the message".to_string());
                    }
                }
            }
        }
        assert_eq!(emitted, 10);
        assert_eq!(firsts, 1);
        // Nothing is reported while the window is open.
        assert_eq!(rl.poll_timeout(), Some(11_000));
        rl.handle_timeout(10_999);
        assert!(drain(&mut rl).is_empty());
        rl.handle_timeout(11_000);
        let s = drain(&mut rl);
        assert_eq!(
            s,
            vec![Summary {
                key: "site",
                detail: Some("the message".into()),
                suppressed: 990,
                start_ms: 1_000,
                end_ms: 11_000,
            }]
        );
        assert_eq!(rl.poll_timeout(), None);
        // The next window starts with a fresh burst.
        assert_eq!(rl.handle_event(20_000, &"site", B), Verdict::Emit);
    }

    #[test]
    fn keys_are_independent() {
        let mut rl: RateLimiter<&str, String> = RateLimiter::new();
        for t in 0..50 {
            rl.handle_event(t, &"flood", B);
        }
        // A quiet site is not starved by a noisy one.
        assert_eq!(rl.handle_event(60, &"quiet", B), Verdict::Emit);
        assert_eq!(rl.poll_timeout(), Some(10_000));
        rl.handle_timeout(10_000);
        let s = drain(&mut rl);
        assert_eq!(s.len(), 1, "only the flooded site is summarised");
        assert_eq!((s[0].key, s[0].suppressed, s[0].detail.clone()), ("flood", 40, None));
    }

    #[test]
    fn an_event_after_the_window_closes_it_without_a_timeout() {
        let mut rl: RateLimiter<&str, String> = RateLimiter::new();
        for t in 0..12 {
            rl.handle_event(t, &"s", B);
        }
        // The timer was missed; the next event rolls the window over and queues the summary.
        assert_eq!(rl.handle_event(10_500, &"s", B), Verdict::Emit);
        let s = drain(&mut rl);
        assert_eq!((s.len(), s[0].suppressed, s[0].end_ms), (1, 2, 10_000));
        // The new window started at 10 500.
        for t in 0..9 {
            assert_eq!(rl.handle_event(10_501 + t, &"s", B), Verdict::Emit);
        }
        assert_eq!(rl.handle_event(10_600, &"s", B), Verdict::Suppress { first: true });
        assert_eq!(rl.poll_timeout(), Some(20_500));
    }

    #[test]
    fn a_steady_flood_is_bounded_per_window() {
        let mut rl: RateLimiter<&str, String> = RateLimiter::new();
        let (mut emitted, mut summaries, mut suppressed) = (0u64, 0u64, 0u64);
        // 60 s of simulated time at one event per millisecond, timeouts handled every 100 ms.
        for t in 0..60_000u64 {
            if rl.handle_event(t, &"s", B) == Verdict::Emit {
                emitted += 1;
            }
            if t % 100 == 0 {
                rl.handle_timeout(t);
                for s in drain(&mut rl) {
                    summaries += 1;
                    suppressed += s.suppressed;
                }
            }
        }
        rl.handle_timeout(u64::MAX);
        for s in drain(&mut rl) {
            summaries += 1;
            suppressed += s.suppressed;
        }
        assert_eq!((emitted, summaries), (60, 6));
        assert_eq!(emitted + suppressed, 60_000, "every event emitted or counted");
    }

    #[test]
    fn quiet_windows_are_forgotten_without_a_summary() {
        let mut rl: RateLimiter<&str, String> = RateLimiter::new();
        rl.handle_event(0, &"a", B);
        rl.handle_event(5, &"b", B);
        assert_eq!(rl.poll_timeout(), None, "nothing suppressed, no timer");
        rl.handle_timeout(10_005);
        assert!(drain(&mut rl).is_empty());
        assert!(rl.windows.is_empty(), "entries of closed windows are dropped");
    }

    #[test]
    fn zero_burst_suppresses_everything_and_still_counts() {
        let mut rl: RateLimiter<&str, String> = RateLimiter::new();
        let b = Budget { burst: 0, window_ms: 1_000 };
        assert_eq!(rl.handle_event(0, &"s", b), Verdict::Suppress { first: true });
        assert_eq!(rl.handle_event(1, &"s", b), Verdict::Suppress { first: false });
        rl.handle_timeout(1_000);
        assert_eq!(drain(&mut rl)[0].suppressed, 2);
    }

    #[test]
    fn describe_keeps_the_first_detail_of_a_window() {
        let mut rl: RateLimiter<&str, String> = RateLimiter::new();
        let b = Budget { burst: 0, window_ms: 1_000 };
        rl.describe(&"s", "before any event".into()); // no window yet: ignored
        rl.handle_event(0, &"s", b);
        rl.describe(&"s", "first".into());
        rl.describe(&"s", "second".into());
        rl.handle_timeout(1_000);
        assert_eq!(drain(&mut rl)[0].detail.as_deref(), Some("first"));
    }
}
