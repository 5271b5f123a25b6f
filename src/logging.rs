//! The process's tracing subscriber: text or JSON on stderr, level and timestamps from the
//! config's `log:` section, colour only on a terminal, and a guard against log floods.
//!
//! Layers, innermost first: the registry; the level filter (reloadable); the flood guard
//! ([`RateLimit`], a thin shell over [`crate::core::ratelimit`]); the formatter (reloadable).
//! [`install`] sets the subscriber up once with the defaults, before anything logs;
//! [`configure`] then switches it in place to a config's settings, so no line is lost or
//! printed twice across the switch. Only the binary calls them.
//!
//! Semantics follow LiteFS's `log.*` keys: `format: text` (default) or `json`;
//! `timestamp: true` adds the time (RFC 3339, UTC), off by default; `debug: true` logs
//! litefleet's DEBUG lines. `LITEFLEET_LOG` (an `EnvFilter`, e.g. `info,litefleet=trace`)
//! replaces the level from the config when set.
//!
//! The flood guard lets each callsite (one log line in the source) emit [`BURST`] events per
//! [`WINDOW`] at ERROR, WARN and INFO, counts the rest, and once the window is
//! over logs one line at the callsite's level, target `litefleet::suppressed`: "suppressed N
//! repeated log lines", with the site's target, location and first suppressed message. A
//! background thread emits those summaries; counts not yet reported when the process exits
//! are lost (at most one window's worth per site). DEBUG and TRACE lines are never limited:
//! they are off unless asked for (`log.debug`, `LITEFLEET_LOG`), and whoever asks for them
//! is diagnosing and needs every line (one per transaction is normal there).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber, span};
use tracing_subscriber::layer::{Context, Layered, SubscriberExt};
use tracing_subscriber::registry::Registry;
use tracing_subscriber::{EnvFilter, Layer, reload};

use crate::config::LogConfig;
use crate::core::ratelimit::{Budget, RateLimiter, Summary, Verdict};

/// The environment variable whose `EnvFilter` overrides the configured level.
pub const ENV: &str = "LITEFLEET_LOG";
/// Target of the summary lines; they are never filtered out or rate-limited themselves.
pub const SUMMARY_TARGET: &str = "litefleet::suppressed";
/// Events each callsite may emit per window at ERROR, WARN and INFO.
pub const BURST: u32 = 10;
/// The rate limiter's window.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Longest sleep of the summary thread: a summary is logged at most this long after its
/// window ends.
const SUMMARY_TICK: Duration = Duration::from_secs(1);
/// Longest message quoted in a summary, in bytes.
const MAX_QUOTE: usize = 200;

/// Why the subscriber could not be installed or changed.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// Another subscriber was installed first.
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
    /// [`configure`] before [`install`].
    #[error("logging is not installed")]
    NotInstalled,
    /// Spans are open: they were recorded by the old formatter, which the new one cannot
    /// read (the JSON formatter panics on spans it did not record).
    #[error("cannot change the log format while {0} spans are open")]
    SpansOpen(usize),
    #[error("reloading the log settings: {0}")]
    Reload(#[from] reload::Error),
    #[error("starting the log summary thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object per line, the event's fields at the top level (`level`, `message`,
    /// `target`, ...).
    Json,
}

/// What the subscriber prints; [`LogConfig`] in typed form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogSettings {
    pub format: LogFormat,
    pub timestamp: bool,
    pub debug: bool,
}

impl From<&LogConfig> for LogSettings {
    /// `format` was validated when the config was loaded (`text` or `json`).
    fn from(c: &LogConfig) -> LogSettings {
        let format = if c.format == "json" { LogFormat::Json } else { LogFormat::Text };
        LogSettings { format, timestamp: c.timestamp, debug: c.debug }
    }
}

// ===== Installing ===== //

type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type Guarded = Layered<RateLimit, Filtered>;
type Output = Box<dyn Layer<Guarded> + Send + Sync>;

struct Handles {
    filter: reload::Handle<EnvFilter, Registry>,
    output: reload::Handle<Output, Guarded>,
    /// Spans alive now, counted by the flood guard (see [`LoggingError::SpansOpen`]).
    spans: Arc<AtomicUsize>,
}

static HANDLES: OnceLock<Handles> = OnceLock::new();

/// Runs `f` with every blockable signal blocked in the calling thread, then restores its mask.
fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: signal-mask manipulation on stack sigsets owned by this frame.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        let r = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        r
    }
}

/// Installs the global subscriber with the default settings (text, no timestamps, INFO, or
/// `LITEFLEET_LOG`) and starts the summary thread. Call once, before anything logs.
pub fn install() -> Result<(), LoggingError> {
    let settings = LogSettings::default();
    let (filter, bad_env) = level_filter(settings);
    let (filter, filter_handle) = reload::Layer::new(filter);
    let guard = RateLimit::new();
    let shared = guard.shared.clone();
    let spans = guard.spans.clone();
    let (output, output_handle) = reload::Layer::new(output(settings));
    let subscriber = Registry::default().with(filter).with(guard).with(output);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| LoggingError::AlreadyInstalled)?;
    // invariant: set_global_default succeeds once per process, so HANDLES is still empty.
    let _ = HANDLES.set(Handles { filter: filter_handle, output: output_handle, spans });
    // The thread starts with every signal blocked (a new thread inherits its creator's
    // mask): the process's signals belong to the threads that wait for them (`mount`'s main
    // thread takes SIGINT/SIGTERM/SIGCHLD with sigwait, the demo's handlers SIGHUP too), and
    // the kernel would otherwise deliver one here, where its default action kills the
    // process without unmounting.
    let spawned = with_signals_blocked(|| {
        std::thread::Builder::new().name("log-summaries".into()).spawn(move || summaries(&shared))
    });
    spawned.map_err(LoggingError::Thread)?;
    if let Some((value, error)) = bad_env {
        tracing::warn!(%value, %error, "{ENV} is not a valid filter; ignored");
    }
    Ok(())
}

/// Switches the installed subscriber to `config`'s settings. The level always changes;
/// the format and timestamps change only while no span is open (the node calls this
/// right after loading its config, before it starts anything), else
/// [`LoggingError::SpansOpen`] and the old format stays.
pub fn configure(config: &LogConfig) -> Result<(), LoggingError> {
    let settings = LogSettings::from(config);
    let handles = HANDLES.get().ok_or(LoggingError::NotInstalled)?;
    handles.filter.reload(level_filter(settings).0)?;
    let new = output(settings);
    let mut old = None;
    let mut open = 0;
    handles.output.modify(|current| {
        // Ordering: the flood guard counts a new span before the formatter (which waits for
        // this write lock) records it, so a span created after this check is recorded by
        // the new formatter. Nothing here may log: the formatter's lock is held.
        open = handles.spans.load(Ordering::SeqCst);
        if open == 0 {
            old = Some(std::mem::replace(current, new));
        }
    })?;
    drop(old);
    if open > 0 {
        return Err(LoggingError::SpansOpen(open));
    }
    Ok(())
}

/// The level filter: `LITEFLEET_LOG` when set and valid, else INFO (DEBUG for litefleet with
/// `debug`). Also returns the rejected value of an invalid `LITEFLEET_LOG` and why.
fn level_filter(settings: LogSettings) -> (EnvFilter, Option<(String, String)>) {
    let default = if settings.debug { "info,litefleet=debug" } else { "info" };
    let (directives, bad) = match std::env::var(ENV) {
        Ok(v) if !v.trim().is_empty() => match EnvFilter::try_new(&v) {
            Ok(_) => (v, None),
            Err(e) => (default.to_owned(), Some((v, e.to_string()))),
        },
        _ => (default.to_owned(), None),
    };
    // Summaries are only ever logged for lines that passed this filter: let them through
    // whatever it says about their own target.
    let filter = EnvFilter::try_new(format!("{directives},{SUMMARY_TARGET}=trace"))
        .or_else(|_| EnvFilter::try_new(format!("{default},{SUMMARY_TARGET}=trace")))
        .unwrap_or_else(|_| EnvFilter::new(default));
    (filter, bad)
}

/// The formatter for `settings`, writing to stderr; ANSI colours only when stderr is a
/// terminal and `NO_COLOR` is unset (a log file never gets escape codes).
fn output(settings: LogSettings) -> Output {
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let text = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    match (settings.format, settings.timestamp) {
        (LogFormat::Text, true) => Box::new(text),
        (LogFormat::Text, false) => Box::new(text.without_time()),
        (LogFormat::Json, timestamp) => {
            let json = text.with_ansi(false).json().flatten_event(true);
            if timestamp { Box::new(json) } else { Box::new(json.without_time()) }
        }
    }
}

// ===== The flood guard ===== //

/// A callsite, compared by address: each has one `'static` metadata.
#[derive(Clone, Copy)]
struct Site(&'static Metadata<'static>);

impl PartialEq for Site {
    fn eq(&self, other: &Site) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Site {}

impl std::hash::Hash for Site {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        std::ptr::hash(self.0, h)
    }
}

struct Shared {
    /// The zero of the limiter's millisecond clock.
    base: Instant,
    /// Hazard: never log while holding this lock. A log line re-enters
    /// [`RateLimit::event_enabled`] on the same thread, which takes it again (deadlock).
    limiter: Mutex<RateLimiter<Site, String>>,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        #[allow(clippy::disallowed_methods)] // the shell owns the clock
        let now = Instant::now();
        now.saturating_duration_since(self.base).as_millis() as u64
    }

    /// The limiter holds counters only: a panic while it was locked at worst miscounts.
    fn lock(&self) -> MutexGuard<'_, RateLimiter<Site, String>> {
        self.limiter.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the windows that are over and returns their summaries and when to call again.
    fn due(&self) -> (Vec<Summary<Site, String>>, Option<u64>, u64) {
        let now = self.now_ms();
        let mut rl = self.lock();
        rl.handle_timeout(now);
        (std::iter::from_fn(|| rl.poll_summary()).collect(), rl.poll_timeout(), now)
    }
}

/// A layer that disables events beyond each callsite's budget (through
/// [`Layer::event_enabled`], so no other layer sees them) and counts spans.
pub struct RateLimit {
    shared: Arc<Shared>,
    spans: Arc<AtomicUsize>,
}

impl RateLimit {
    fn new() -> RateLimit {
        #[allow(clippy::disallowed_methods)] // the shell owns the clock
        let base = Instant::now();
        RateLimit {
            shared: Arc::new(Shared { base, limiter: Mutex::new(RateLimiter::new()) }),
            spans: Arc::new(AtomicUsize::new(0)),
        }
    }
}

fn budget() -> Budget {
    Budget { burst: BURST, window_ms: WINDOW.as_millis() as u64 }
}

impl<S: Subscriber> Layer<S> for RateLimit {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if meta.target() == SUMMARY_TARGET || *meta.level() >= Level::DEBUG {
            return true;
        }
        let site = Site(meta);
        let now = self.shared.now_ms();
        let verdict = self.shared.lock().handle_event(now, &site, budget());
        match verdict {
            Verdict::Emit => true,
            Verdict::Suppress { first } => {
                if first {
                    // Outside the lock: formatting a field runs arbitrary Display code.
                    let message = quote(event);
                    self.shared.lock().describe(&site, message);
                }
                false
            }
        }
    }

    fn on_new_span(&self, _: &span::Attributes<'_>, _: &span::Id, _: Context<'_, S>) {
        self.spans.fetch_add(1, Ordering::SeqCst);
    }

    fn on_close(&self, _: span::Id, _: Context<'_, S>) {
        self.spans.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The event's message, cut to [`MAX_QUOTE`] bytes.
fn quote(event: &Event<'_>) -> String {
    struct Message(String);
    impl Visit for Message {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" {
                self.0 = value.to_owned();
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 = format!("{value:?}");
            }
        }
    }
    let mut m = Message(String::new());
    event.record(&mut m);
    let mut s = m.0;
    if s.len() > MAX_QUOTE {
        let mut cut = MAX_QUOTE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// The summary thread: logs each window's summary once it is over.
fn summaries(shared: &Shared) {
    loop {
        let (due, next, now) = shared.due();
        // The lock is released: logging here re-enters the flood guard.
        for s in due {
            log_summary(&s);
        }
        let wait = next.map_or(SUMMARY_TICK, |t| Duration::from_millis(t.saturating_sub(now)));
        std::thread::sleep(wait.clamp(Duration::from_millis(10), SUMMARY_TICK));
    }
}

fn log_summary(s: &Summary<Site, String>) {
    let meta = s.key.0;
    let location = format!("{}:{}", meta.file().unwrap_or("?"), meta.line().unwrap_or(0));
    let first = s.detail.as_deref().unwrap_or("");
    let secs = (s.end_ms - s.start_ms).div_ceil(1000);
    let n = s.suppressed;
    // A level is part of a callsite, so one callsite per level.
    macro_rules! summary {
        ($level:expr) => {
            tracing::event!(target: SUMMARY_TARGET, $level, count = n, site = %meta.target(),
                %location, %first, "suppressed {n} repeated log lines in {secs}s")
        };
    }
    match *meta.level() {
        Level::ERROR => summary!(Level::ERROR),
        Level::WARN => summary!(Level::WARN),
        Level::INFO => summary!(Level::INFO),
        Level::DEBUG => summary!(Level::DEBUG),
        _ => summary!(Level::TRACE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_flooding_callsite_is_cut_and_summarised_with_its_count() {
        let buf = Buf::default();
        let guard = RateLimit::new();
        let shared = guard.shared.clone();
        let w = buf.clone();
        let fmt = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .without_time()
            .with_writer(move || w.clone());
        let subscriber = Registry::default().with(guard).with(fmt);
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..500 {
                tracing::warn!(peer = %"127.0.0.1:9", i, "handshake failed");
            }
            tracing::info!("another site");
            // The window is still open: nothing to report yet.
            assert!(shared.due().0.is_empty());
            // Move the window's end into the past rather than waiting 10 s.
            let mut rl = shared.lock();
            rl.handle_timeout(u64::MAX);
            let due: Vec<_> = std::iter::from_fn(|| rl.poll_summary()).collect();
            drop(rl);
            assert_eq!(due.len(), 1);
            for s in &due {
                log_summary(s);
            }
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), BURST as usize + 2, "{out}");
        assert!(lines[..BURST as usize].iter().all(|l| l.contains("handshake failed")), "{out}");
        assert!(lines[BURST as usize].contains("another site"), "{out}");
        let summary = lines[BURST as usize + 1];
        assert!(
            summary.starts_with(" WARN litefleet::suppressed: suppressed 490 repeated"),
            "{summary}"
        );
        assert!(summary.contains("first=handshake failed"), "{summary}");
        assert!(summary.contains("location=src/logging.rs:"), "{summary}");
    }
}
