//! `litefleet mount`: run a node in the foreground.
//!
//! Startup order: config → ownership (the data directory's lock; fuse.dir not a live mount)
//! → data directory (recovery of every database) → replication (its UDP port bound) → FUSE
//! mount → `exec` commands. Runs until SIGINT/SIGTERM (forwarded to the `exec` child, whose
//! exit code becomes ours) or until the `exec` child exits; then unmounts cleanly.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use litefleet::config::{Config, ExecCmd};
use litefleet::core::types::NodeId;
use litefleet::db::DbOptions;
use litefleet::mount::{DataDirLock, MountOpts, Mounted};
use litefleet::store::Store;

pub struct MountArgs {
    pub config: Option<PathBuf>,
    pub no_expand_env: bool,
    pub skip_unmount: bool,
    pub exec: Vec<String>,
    pub threads: usize,
}

fn random_node_id() -> NodeId {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    NodeId(u64::from_le_bytes(b) | 1)
}

pub fn run(args: MountArgs) -> anyhow::Result<ExitCode> {
    litefleet::mount::block_shutdown_signals();
    block_sigchld();
    forward_stray_signals()?;
    let path = Config::find(args.config.as_deref()).context(
        "no config file: pass --config, or put litefleet.yml / litefs.yml in the current \
         directory, ~ or /etc",
    )?;
    let config = Config::load(&path, !args.no_expand_env)?;
    // First, before anything else logs or opens a span (the format can change only then).
    if let Err(e) = litefleet::logging::configure(&config.log) {
        tracing::warn!(error = %e, "log settings not applied");
    }
    for key in config.ignored_keys() {
        tracing::warn!(
            key,
            "config section accepted for LiteFS compatibility but not implemented; ignored"
        );
    }
    // Ownership before anything else touches either directory: the data directory is this
    // process's from here to its exit (a second node on it refuses, naming this pid), and a
    // live mount at fuse.dir is refused; only a dead one is cleared (not with
    // --skip-unmount). Mounting checks fuse.dir again (another node may have mounted since).
    let _data_lock = DataDirLock::acquire(&config.data.dir)?;
    litefleet::mount::prepare_mount_point(&config.fuse.dir, !args.skip_unmount)?;
    // The HTTP API's TCP port, bound before recovery: a port in use is a startup error.
    let http_listener = litefleet::http::bind(&config.http.addr)?;
    // The proxy's port too (`proxy:` with a `target`).
    let proxy_cfg = config.proxy.clone().filter(|p| !p.target.is_empty());
    let proxy_listener = match &proxy_cfg {
        Some(p) => Some(litefleet::http::bind_as("proxy.addr", &p.addr)?),
        None => None,
    };
    let node_id = random_node_id();
    tracing::info!(node = %node_id, config = %path.display(), "starting");
    let rt = litefleet::rt::runtime().context("starting the runtime")?;
    let node = Arc::new(litefleet::node::NodeCtx::default());
    // Before recovery: a replica resyncs a diverged database instead of refusing to start,
    // and folds its WAL into the database file. Only a static primary is writable from the
    // start; a Consul candidate becomes writable when it holds the lease.
    node.set_writable(config.lease.candidate && config.lease.kind == "static");
    // Under a static lease nothing fails over automatically, so every replica's copy
    // counts; under Consul only candidates' (`protocol.md` §11).
    node.set_sync_replicas(config.lease.sync_replicas, config.lease.kind == "static");
    let opts = DbOptions { compress: config.data.compress, node_id };
    let store = Arc::new(
        Store::open(&config.data.dir, opts, rt.handle().clone(), node.clone())
            .context("opening the data directory")?,
    );
    let _rt_guard = rt.enter();
    let (http_stop, http_stopped) = tokio::sync::watch::channel(false);
    let api = Arc::new(litefleet::http::Api {
        store: store.clone(),
        cfg: litefleet::http::ApiConfig {
            node_id,
            hostname: super::replication::hostname(&config),
            advertise_url: super::replication::own_url(&config),
            candidate: config.lease.candidate,
            mount: config.fuse.dir.clone(),
            token: config.http.token.clone().filter(|t| !t.is_empty()),
        },
    });
    // Before replication starts: forwarded requests find the proxy from the first stream.
    let proxy = match (proxy_cfg, proxy_listener) {
        (Some(cfg), Some(listener)) => {
            let p = litefleet::proxy::Proxy::new(cfg, store.clone());
            node.set_proxy(p.clone());
            Some(rt.spawn(p.serve(listener, http_stopped.clone())))
        }
        _ => None,
    };
    let http = rt.spawn(litefleet::http::serve(http_listener, api, http_stopped));
    let replication = super::replication::start(&config, &store, node_id, &rt)?;
    let opts = MountOpts {
        allow_other: config.fuse.allow_other,
        threads: args.threads,
        clear_stale: !args.skip_unmount,
    };
    let mounted = Mounted::mount_with(store.clone(), &config.fuse.dir, opts)?;
    let stop = Arc::new(AtomicBool::new(false));
    let retention = spawn_retention(store.clone(), &config, stop.clone());
    let scrub = litefleet::scrub::spawn(store.clone(), config.data.scrub_interval, stop.clone());

    // exec: the CLI's command overrides the config's.
    let cmds: Vec<ExecCmd> = if !args.exec.is_empty() {
        vec![ExecCmd { cmd: shell_join(&args.exec), if_candidate: false }]
    } else {
        config.exec.as_ref().map(|e| e.commands()).unwrap_or_default()
    };
    let mut child = run_exec(&cmds, &config.fuse.dir, config.lease.candidate)?;
    let code = loop {
        let sig = wait_signal();
        if sig == libc::SIGCHLD {
            if let Some(c) = child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                tracing::info!(?status, "exec command exited");
                break status.code().unwrap_or(1);
            }
            continue;
        }
        tracing::info!(signal = sig, "shutting down");
        match child.as_mut() {
            Some(c) => {
                // SAFETY: kill with a pid we spawned and a valid signal number.
                unsafe { libc::kill(c.id() as i32, sig) };
                break c.wait()?.code().unwrap_or(1);
            }
            None => break 0,
        }
    };
    stop.store(true, Ordering::SeqCst);
    retention.thread().unpark();
    let _ = retention.join();
    scrub.thread().unpark();
    let _ = scrub.join();
    if let Some(repl) = replication {
        // A primary first lets its candidates catch up, so whoever takes the lease next
        // has every commit this node accepted (asynchronous replication loses none).
        #[allow(clippy::disallowed_methods)] // the shell owns the clock
        let t = std::time::Instant::now();
        match rt.block_on(litefleet::repl::primary::drain(&store, DRAIN)) {
            Ok(d) if d.behind.is_empty() && d.caught_up > 0 => tracing::info!(
                dbs = d.caught_up,
                ms = t.elapsed().as_millis() as u64,
                "drained: every connected candidate holds every commit"
            ),
            Ok(d) if !d.behind.is_empty() => tracing::warn!(
                behind = ?d.behind,
                "shutting down with candidates behind; their missing commits will be set \
                 aside when this node rejoins"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "draining before shutdown failed"),
        }
        // Read-only first, then the lease is released and every link closed.
        let _ = rt.block_on(repl.sup.stop_and_wait(Some("shutting down".into()), Some(SHUTDOWN)));
    }
    let _ = http_stop.send(true);
    if let Ok(Err(e)) = rt.block_on(http) {
        tracing::warn!(error = %e, "the HTTP API failed");
    }
    if let Some(Ok(Err(e))) = proxy.map(|p| rt.block_on(p)) {
        tracing::warn!(error = %e, "the proxy failed");
    }
    mounted.unmount()?;
    for db in store.list() {
        db.shutdown();
    }
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// How long a primary's shutdown waits for its candidates to acknowledge its last commits.
const DRAIN: Duration = Duration::from_secs(3);

/// How long shutdown waits for the replication actors.
const SHUTDOWN: Duration = Duration::from_secs(5);

fn shell_join(args: &[String]) -> String {
    args.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect::<Vec<_>>().join(" ")
}

/// Runs every command but the last to completion (each must exit 0), then starts the last
/// and returns it. Commands with `if-candidate: true` run only on candidates (migrations).
fn run_exec(cmds: &[ExecCmd], mount: &Path, candidate: bool) -> anyhow::Result<Option<Child>> {
    let cmds: Vec<&ExecCmd> = cmds
        .iter()
        .filter(|c| {
            let run = candidate || !c.if_candidate;
            if !run {
                tracing::info!(cmd = %c.cmd, "skipped: if-candidate, and this node is not one");
            }
            run
        })
        .collect();
    let Some((last, first)) = cmds.split_last() else { return Ok(None) };
    for c in first {
        tracing::info!(cmd = %c.cmd, "running");
        let st = exec_command(&c.cmd, mount).status()?;
        if !st.success() {
            bail!("exec command {:?} failed: {st}", c.cmd);
        }
    }
    tracing::info!(cmd = %last.cmd, "starting");
    Ok(Some(exec_command(&last.cmd, mount).spawn()?))
}

/// `/bin/sh -c cmd`, with `LITEFLEET_MOUNT` set. The command cannot outlive the node it
/// runs on (its database is this mount, its writes go through this node's proxy): if this
/// process dies, even by SIGKILL, the kernel sends it SIGTERM (a shell that `exec`s the
/// app passes that on to the app). Hazard: that signal follows the thread that forked, so
/// commands start on the main thread, which lives until the process exits.
fn exec_command(line: &str, mount: &Path) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(line).env("LITEFLEET_MOUNT", mount);
    // SAFETY: prctl, sigemptyset and pthread_sigmask are async-signal-safe and change only
    // the child's own attributes.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // This process blocks the signals it waits for (`wait_signal`); a child
            // inherits the mask, and an app with SIGTERM blocked never stops.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
    cmd
}

fn spawn_retention(
    store: Arc<Store>,
    config: &Config,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let retention = config.data.retention;
    let every = config.data.retention_monitor_interval;
    std::thread::spawn(move || {
        if every.is_zero() {
            return;
        }
        while !stop.load(Ordering::SeqCst) {
            std::thread::park_timeout(every.max(Duration::from_millis(100)));
            if stop.load(Ordering::SeqCst) {
                break;
            }
            #[allow(clippy::disallowed_methods)]
            let now = std::time::SystemTime::now();
            for db in store.list() {
                match db.ltx_dir().enforce_retention(retention, now) {
                    Ok(r) => {
                        // Hazard: a file written during the pass may be missed by the
                        // listing; the next pass counts it.
                        db.metrics().ltx_dir(r.files, r.bytes);
                        db.metrics().reaped(r.removed);
                        if r.removed > 0 {
                            tracing::debug!(db = db.name(), removed = r.removed, "retention");
                        }
                    }
                    Err(e) => tracing::warn!(db = db.name(), error = %e, "retention failed"),
                }
            }
        }
    })
}

fn block_sigchld() {
    // SAFETY: signal-mask manipulation on a stack sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// The signals the main thread takes with [`wait_signal`].
const WAITED: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD];

/// The main thread's kernel thread id, for [`forward_to_main`].
static MAIN_TID: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_to_main(sig: libc::c_int) {
    // Async-signal-safe: an atomic load and two plain syscalls.
    let tid = MAIN_TID.load(Ordering::Relaxed);
    // SAFETY: tgkill to a thread of this process; the main thread blocks `sig`, so it
    // stays pending there until `wait_signal` takes it.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, sig) };
}

/// Hands the main thread the signals it waits for even when they land elsewhere. The
/// kernel delivers a process-directed signal to any thread that does not block it, and a
/// thread started before this function's caller set its mask (the logger's, started by
/// `main`) does not: there SIGTERM would kill the node without unmounting, and SIGCHLD
/// would be dropped. Seen when a demo is killed: each node gets its parent-death SIGTERM
/// once per thread of the dying demo, the second one while the node is shutting down.
fn forward_stray_signals() -> anyhow::Result<()> {
    // SAFETY: gettid has no preconditions.
    MAIN_TID.store(unsafe { libc::syscall(libc::SYS_gettid) } as i32, Ordering::Relaxed);
    for sig in WAITED {
        // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward_to_main as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            bail!("installing a handler for signal {sig}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Waits for SIGINT, SIGTERM or SIGCHLD.
fn wait_signal() -> i32 {
    // SAFETY: as above; sigwait stores the signal in `sig`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        let mut sig = 0;
        libc::sigwait(&set, &mut sig);
        sig
    }
}
