//! The node configuration file: LiteFS's `litefs.yml`, read with the same keys, meanings and
//! defaults, plus litefleet's own keys (`tls.*`, `quic.*`, `lease.sync-replicas`).
//!
//! Before parsing, `$VAR` and `${VAR}` are expanded as LiteFS does (Go's `os.Expand`), with
//! LiteFS's `${A == 'x'}` / `${A != "x"}` / `${A == B}` comparisons. Every struct denies
//! unknown fields, so a typo is an error naming the key and its line. Keys LiteFS has but
//! litefleet does not implement (`proxy`, `backup`, `tracing`) are accepted and ignored, so
//! an existing `litefs.yml` loads unchanged; the mount logs which ones it ignores.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Errors loading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}:{column}: {message}")]
    Parse { path: PathBuf, line: u64, column: u64, message: String },
    #[error("{path}: {key}: {reason}")]
    Invalid { path: PathBuf, key: &'static str, reason: String },
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    #[serde(default)]
    pub fuse: FuseConfig,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub exec: Option<Exec>,
    #[serde(default = "yes")]
    pub exit_on_error: bool,
    #[serde(default)]
    pub skip_sync: bool,
    #[serde(default)]
    pub strict_verify: bool,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub proxy: Option<ProxyConfig>,
    #[serde(default)]
    pub lease: LeaseConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub quic: QuicConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub backup: Option<Ignored>,
    #[serde(default)]
    pub tracing: Option<Ignored>,
}

/// A section LiteFS has and litefleet ignores: any mapping is accepted.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Ignored(#[allow(dead_code)] serde::de::IgnoredAny);

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FuseConfig {
    #[serde(default = "default_fuse_dir")]
    pub dir: PathBuf,
    #[serde(default)]
    pub allow_other: bool,
    #[serde(default)]
    pub debug: bool,
}

fn default_fuse_dir() -> PathBuf {
    PathBuf::from("/litefs")
}

impl Default for FuseConfig {
    fn default() -> FuseConfig {
        FuseConfig { dir: default_fuse_dir(), allow_other: false, debug: false }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DataConfig {
    #[serde(default = "default_data_dir")]
    pub dir: PathBuf,
    #[serde(default = "yes")]
    pub compress: bool,
    #[serde(default = "ten_minutes", deserialize_with = "duration")]
    pub retention: Duration,
    #[serde(default = "one_minute", deserialize_with = "duration")]
    pub retention_monitor_interval: Duration,
    /// litefleet: how often every database is compared with its position's checksum
    /// (`0s`: only at startup). Writes to a database wait while it is read.
    #[serde(default = "one_hour", deserialize_with = "duration")]
    pub scrub_interval: Duration,
}

fn one_hour() -> Duration {
    Duration::from_secs(3600)
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/litefs")
}
fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}
fn one_minute() -> Duration {
    Duration::from_secs(60)
}
fn one_second() -> Duration {
    Duration::from_secs(1)
}
fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

impl Default for DataConfig {
    fn default() -> DataConfig {
        DataConfig {
            dir: default_data_dir(),
            compress: true,
            retention: ten_minutes(),
            retention_monitor_interval: one_minute(),
            scrub_interval: one_hour(),
        }
    }
}

/// `exec`: a command line, or a list of commands of which all but the last run to
/// completion first.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Exec {
    Line(String),
    List(Vec<ExecCmd>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExecCmd {
    pub cmd: String,
    #[serde(default)]
    pub if_candidate: bool,
}

impl Exec {
    /// The commands in order.
    pub fn commands(&self) -> Vec<ExecCmd> {
        match self {
            Exec::Line(s) => vec![ExecCmd { cmd: s.clone(), if_candidate: false }],
            Exec::List(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpConfig {
    #[serde(default = "default_http_addr")]
    pub addr: String,
    #[serde(default, deserialize_with = "duration")]
    pub snapshot_timeout: Duration,
    /// litefleet: requests that change state (import, promote, handoff) from anywhere but
    /// loopback must carry `Authorization: Bearer <token>`; unset, only loopback may.
    #[serde(default)]
    pub token: Option<String>,
}

fn default_http_addr() -> String {
    ":20202".into()
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig { addr: default_http_addr(), snapshot_timeout: Duration::ZERO, token: None }
    }
}

/// `proxy:`, LiteFS's keys and defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProxyConfig {
    /// Where the proxy listens (required with `target`).
    #[serde(default)]
    pub addr: String,
    /// `host:port` of the app; empty: no proxy.
    #[serde(default)]
    pub target: String,
    /// The database whose position the `__txid` cookie carries (required with `target`).
    #[serde(default)]
    pub db: String,
    #[serde(default = "ten_seconds", deserialize_with = "duration")]
    pub max_lag: Duration,
    #[serde(default)]
    pub debug: bool,
    #[serde(default)]
    pub passthrough: Vec<String>,
    #[serde(default)]
    pub always_forward: Vec<String>,
    #[serde(default = "five_seconds", deserialize_with = "duration")]
    pub primary_redirect_timeout: Duration,
    #[serde(default, deserialize_with = "duration")]
    pub read_timeout: Duration,
    #[serde(default, deserialize_with = "duration")]
    pub write_timeout: Duration,
    #[serde(default = "ten_seconds", deserialize_with = "duration")]
    pub read_header_timeout: Duration,
    #[serde(default = "thirty_seconds", deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LeaseConfig {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub advertise_url: Option<String>,
    #[serde(default = "yes")]
    pub candidate: bool,
    #[serde(default)]
    pub promote: bool,
    #[serde(default = "one_second", deserialize_with = "duration")]
    pub reconnect_delay: Duration,
    #[serde(default = "ten_seconds", deserialize_with = "duration")]
    pub demote_delay: Duration,
    #[serde(default)]
    pub databases: Vec<String>,
    #[serde(default)]
    pub consul: Option<ConsulConfig>,
    /// litefleet: commits wait for this many replicas (0 = asynchronous, as LiteFS).
    #[serde(default)]
    pub sync_replicas: u32,
}

impl Default for LeaseConfig {
    fn default() -> LeaseConfig {
        LeaseConfig {
            kind: String::new(),
            hostname: None,
            advertise_url: None,
            candidate: true,
            promote: false,
            reconnect_delay: one_second(),
            demote_delay: ten_seconds(),
            databases: Vec::new(),
            consul: None,
            sync_replicas: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConsulConfig {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub key: String,
    #[serde(default = "ten_seconds", deserialize_with = "duration")]
    pub ttl: Duration,
    #[serde(default = "one_second", deserialize_with = "duration")]
    pub lock_delay: Duration,
    /// litefleet: a candidate that has heard nothing from the primary for this long
    /// suspects it (fast failover, `protocol.md` §10.2); `0s` turns fast failover off (the
    /// lease then moves only when Consul expires the session, as in LiteFS).
    #[serde(default = "one_second", deserialize_with = "duration")]
    pub failover_timeout: Duration,
    /// litefleet: how many nodes must suspect the primary before its session is destroyed.
    #[serde(default = "one")]
    pub failover_quorum: u32,
}

fn one() -> u32 {
    1
}

/// litefleet: PEM files for mutual TLS between nodes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsConfig {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// litefleet: QUIC addresses (default: the host:port of `http.addr` / the primary's
/// `lease.advertise-url`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct QuicConfig {
    pub addr: Option<String>,
    pub primary_addr: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogConfig {
    #[serde(default = "default_log_format")]
    pub format: String,
    #[serde(default)]
    pub timestamp: bool,
    #[serde(default)]
    pub debug: bool,
}

fn default_log_format() -> String {
    "text".into()
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig { format: default_log_format(), timestamp: false, debug: false }
    }
}

// ===== Durations ===== //

/// Parses a Go duration string: a sequence of `<number><unit>` with units `ns`, `us`, `µs`,
/// `ms`, `s`, `m`, `h` (fractions allowed), or `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_end == 0 {
            return Err(format!("invalid duration {s:?}: expected a number"));
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!("invalid duration {s:?}: missing unit (ns, us, ms, s, m, h)"));
            }
            u => return Err(format!("invalid duration {s:?}: unknown unit {u:?}")),
        };
        total += n * secs;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Int(u64),
    }
    match Raw::deserialize(d)? {
        Raw::Text(s) => parse_duration(&s).map_err(serde::de::Error::custom),
        Raw::Int(0) => Ok(Duration::ZERO),
        Raw::Int(n) => Err(serde::de::Error::custom(format!(
            "invalid duration {n}: missing unit (ns, us, ms, s, m, h)"
        ))),
    }
}

// ===== Environment expansion ===== //

/// Expands `$VAR` and `${VAR}` like Go's `os.Expand` with LiteFS's mapping function:
/// unset variables become empty; `${…}` is trimmed and may be a comparison
/// (`A == 'lit'`, `A != "lit"`, `A == B`) giving `true` or `false`. After `$`, a name is
/// `[A-Za-z0-9_]+`, or one of `*#$@!?-` or a digit alone (expanding to ""); `$` before
/// anything else is dropped together with that character's absence of a name, as Go does.
pub fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            out.push_str(&text[last..i]);
            let (name, width) = shell_name(&text[i + 1..]);
            if name.is_none() && width > 0 {
                // Bad syntax (e.g. "${" unterminated): Go drops the "$" and what it consumed.
            } else if name.is_none() {
                // "$" followed by an invalid character: Go keeps the "$".
                out.push('$');
            } else if let Some(n) = name {
                out.push_str(&mapping(n, env));
            }
            i += 1 + width;
            last = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[last..]);
    out
}

/// Go's `getShellName`: returns the name and how many bytes it used.
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_special(b[1]) && b[2] == b'}' {
            return (Some(&s[1..2]), 3);
        }
        for i in 1..b.len() {
            if b[i] == b'}' {
                if i == 1 {
                    return (None, 2); // "${}" is bad syntax
                }
                return (Some(&s[1..i]), i + 1);
            }
        }
        return (None, 1); // unterminated: bad syntax
    }
    if is_special(b[0]) {
        return (Some(&s[0..1]), 1);
    }
    let n = b.iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
    if n == 0 { (None, 0) } else { (Some(&s[..n]), n) }
}

fn is_special(c: u8) -> bool {
    matches!(c, b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9')
}

/// LiteFS's expansion function: plain names, or `A == 'x'`-style comparisons.
fn mapping(expr: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let expr = expr.trim();
    for op in ["==", "!="] {
        if let Some((l, r)) = expr.split_once(op) {
            let lhs = env(l.trim()).unwrap_or_default();
            let r = r.trim();
            let rhs = if r.len() >= 2
                && ((r.starts_with('\'') && r.ends_with('\''))
                    || (r.starts_with('"') && r.ends_with('"')))
            {
                r[1..r.len() - 1].to_owned()
            } else {
                env(r).unwrap_or_default()
            };
            let eq = lhs == rhs;
            return (if op == "==" { eq } else { !eq }).to_string();
        }
    }
    env(expr).unwrap_or_default()
}

// ===== Loading ===== //

impl Config {
    /// Parses `text` (the contents of `path`, used in messages). With `expand`, environment
    /// variables are expanded first through `env`.
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        expand: bool,
    ) -> Result<Config, ConfigError> {
        let text = if expand { expand_env(text, env) } else { text.to_owned() };
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_saphyr::from_str(&text).map_err(|e| {
                let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
                ConfigError::Parse { path: path.to_owned(), line, column, message: e.to_string() }
            })?
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Reads and parses the file at `path` with the process environment. `HOSTNAME` falls
    /// back to the machine's hostname, as `litefs mount` sets it.
    pub fn load(path: &Path, expand: bool) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let env =
            |k: &str| std::env::var(k).ok().or_else(|| (k == "HOSTNAME").then(hostname).flatten());
        Config::parse(&text, path, &env, expand)
    }

    /// LiteFS's lookup order: the explicit path, then `./litefleet.yml`, `./litefs.yml`,
    /// `~/litefs.yml`, `/etc/litefs.yml`.
    pub fn find(explicit: Option<&Path>) -> Option<PathBuf> {
        if let Some(p) = explicit {
            return Some(p.to_owned());
        }
        let mut candidates = vec![PathBuf::from("litefleet.yml"), PathBuf::from("litefs.yml")];
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(PathBuf::from(home).join("litefs.yml"));
        }
        candidates.push(PathBuf::from("/etc/litefs.yml"));
        candidates.into_iter().find(|p| p.exists())
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid { path: path.to_owned(), key, reason: reason.to_owned() })
        };
        if self.fuse.dir.as_os_str().is_empty() {
            return invalid("fuse.dir", "must be set");
        }
        // Refused rather than resolved: the mount point is where every application and
        // every ownership check (another node's, `/proc/self/mountinfo`) finds the node, and
        // a relative one moves with the directory the node happens to be started from.
        if self.fuse.dir.is_relative() {
            return invalid(
                "fuse.dir",
                &format!("must be an absolute path, not {}", self.fuse.dir.display()),
            );
        }
        if self.data.dir.as_os_str().is_empty() {
            return invalid("data.dir", "must be set");
        }
        if self.fuse.dir == self.data.dir
            || self.fuse.dir.starts_with(&self.data.dir)
            || self.data.dir.starts_with(&self.fuse.dir)
        {
            return invalid(
                "fuse.dir",
                "must differ from data.dir and neither may contain the other",
            );
        }
        match self.lease.kind.as_str() {
            "static" => {
                if !self.lease.candidate && self.lease.advertise_url.is_none() {
                    return invalid(
                        "lease.advertise-url",
                        "required on a static replica (the primary's URL)",
                    );
                }
            }
            "consul" => {
                let Some(c) = &self.lease.consul else {
                    return invalid("lease.consul", "required when lease.type is consul");
                };
                if c.url.is_empty() {
                    return invalid("lease.consul.url", "required");
                }
                if c.key.is_empty() {
                    return invalid("lease.consul.key", "required");
                }
                if c.ttl < Duration::from_secs(10) {
                    return invalid("lease.consul.ttl", "Consul's minimum session TTL is 10s");
                }
                if c.lock_delay < Duration::from_millis(200) {
                    return invalid(
                        "lease.consul.lock-delay",
                        "must be at least 200ms: the primary stops writing 3/4 of it after its \
                         last renew, before anyone else may take the lease",
                    );
                }
                if c.failover_quorum == 0 {
                    return invalid("lease.consul.failover-quorum", "must be at least 1");
                }
            }
            "" => return invalid("lease.type", "required: static or consul"),
            _ => return invalid("lease.type", "must be static or consul"),
        }
        if self.lease.candidate && !self.lease.databases.is_empty() {
            return invalid("lease.databases", "only allowed on non-candidate nodes");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return invalid("log.format", "must be text or json");
        }
        if let Some(p) = self.proxy.as_ref().filter(|p| !p.target.is_empty()) {
            if p.addr.is_empty() {
                return invalid("proxy.addr", "required with proxy.target");
            }
            if p.db.is_empty() {
                return invalid("proxy.db", "required with proxy.target");
            }
        }
        Ok(())
    }

    /// Keys present in the file that litefleet accepts but does not act on.
    pub fn ignored_keys(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.backup.is_some() {
            v.push("backup");
        }
        if self.tracing.is_some() {
            v.push("tracing");
        }
        v
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "A" => Some("alpha".into()),
            "B" => Some("alpha".into()),
            "C" => Some("gamma".into()),
            "REGION" => Some("ams".into()),
            "PRIMARY_REGION" => Some("ams".into()),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("litefs.yml"), &env, true)
    }

    #[test]
    fn fly_sample_config_parses() {
        let c = parse(
            r#"
fuse:
  dir: "/litefs"
data:
  dir: "/var/lib/litefs"
exit-on-error: false
proxy:
  addr: ":8080"
  target: "localhost:8081"
  db: "db"
  passthrough:
    - "*.ico"
exec:
  - cmd: "migrate -db /litefs/db"
    if-candidate: true
  - cmd: "app -addr :8081"
lease:
  type: "consul"
  advertise-url: "http://${HOSTNAME}.vm.${FLY_APP_NAME}.internal:20202"
  candidate: ${REGION == PRIMARY_REGION}
  promote: true
  consul:
    url: "${FLY_CONSUL_URL}x"
    key: "litefs/${FLY_APP_NAME}"
"#,
        )
        .unwrap();
        assert_eq!(c.fuse.dir, PathBuf::from("/litefs"));
        assert!(!c.exit_on_error);
        assert!(c.lease.candidate && c.lease.promote);
        assert_eq!(c.lease.advertise_url.as_deref(), Some("http://.vm..internal:20202"));
        let consul = c.lease.consul.as_ref().unwrap();
        assert_eq!((consul.url.as_str(), consul.key.as_str()), ("x", "litefs/"));
        assert_eq!(consul.ttl, Duration::from_secs(10));
        let cmds = c.exec.as_ref().unwrap().commands();
        assert_eq!(cmds.len(), 2);
        assert!(cmds[0].if_candidate && !cmds[1].if_candidate);
        assert!(c.ignored_keys().is_empty());
        let p = c.proxy.as_ref().unwrap();
        assert_eq!(
            (p.addr.as_str(), p.target.as_str(), p.db.as_str()),
            (":8080", "localhost:8081", "db")
        );
        assert_eq!(p.primary_redirect_timeout, Duration::from_secs(5));
    }

    #[test]
    fn defaults_for_a_minimal_file() {
        let c = parse("fuse: {dir: /x}\ndata: {dir: /y}\nlease: {type: static}\nexec: app serve\n")
            .unwrap();
        assert!(c.data.compress);
        assert_eq!(c.data.retention, Duration::from_secs(600));
        assert_eq!(c.data.retention_monitor_interval, Duration::from_secs(60));
        assert_eq!(c.http.addr, ":20202");
        assert!(c.lease.candidate && c.exit_on_error);
        assert_eq!(c.lease.reconnect_delay, Duration::from_secs(1));
        assert_eq!(c.log.format, "text");
        assert_eq!(c.exec.unwrap().commands()[0].cmd, "app serve");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        for bad in ["", "10", "s", "10x", "1h30"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let e = parse("fuse: {dir: /x}\ndata: {dir: /y, retention: 10x}\nlease: {type: static}\n")
            .unwrap_err();
        assert!(e.to_string().contains("unknown unit"), "{e}");
    }

    #[test]
    fn env_expansion_matches_go() {
        let x = |s: &str| expand_env(s, &env);
        assert_eq!(x("$A"), "alpha");
        assert_eq!(x("${A}"), "alpha");
        assert_eq!(x("${ A }"), "alpha");
        assert_eq!(x("[$UNSET]"), "[]");
        assert_eq!(x("${A == 'alpha'}"), "true");
        assert_eq!(x("${A != \"alpha\"}"), "false");
        assert_eq!(x("${A == B}"), "true");
        assert_eq!(x("${A == C}"), "false");
        assert_eq!(x("a$$b"), "ab");
        assert_eq!(x("$1x"), "x");
        assert_eq!(x("cost: 5$"), "cost: 5$");
        assert_eq!(x("a$%b"), "a$%b");
        assert_eq!(x("x${A"), "xA");
        assert_eq!(x("${}"), "");
        assert_eq!(expand_env("plain", &env), "plain");
        let c = Config::parse(
            "fuse: {dir: /$A}\ndata: {dir: /y}\nlease: {type: static}\n",
            Path::new("f"),
            &env,
            false,
        );
        assert_eq!(c.unwrap().fuse.dir, PathBuf::from("/$A"), "no expansion when disabled");
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let e = parse("data:\n  dir: /y\nfuse:\n  dirr: /x\nlease: {type: static}\n").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("dirr"), "{s}");
        assert!(matches!(e, ConfigError::Parse { line: 4, .. }), "{e:?}");
        let e = parse("fuse: {dir: /x}\ndata: {dir: /y}\nlease: {type: static}\nbogus: 1\n")
            .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn invalid_settings_are_named() {
        let cases = [
            ("fuse: {dir: /x}\ndata: {dir: /x}\nlease: {type: static}\n", "fuse.dir"),
            ("fuse: {dir: mnt}\ndata: {dir: /y}\nlease: {type: static}\n", "fuse.dir"),
            ("fuse: {dir: ./mnt}\ndata: {dir: /y}\nlease: {type: static}\n", "fuse.dir"),
            ("fuse: {dir: /x}\ndata: {dir: /x/data}\nlease: {type: static}\n", "fuse.dir"),
            ("fuse: {dir: /x}\ndata: {dir: /y}\n", "lease.type"),
            ("fuse: {dir: /x}\ndata: {dir: /y}\nlease: {type: etcd}\n", "lease.type"),
            (
                "fuse: {dir: /x}\ndata: {dir: /y}\nlease: {type: static, candidate: false}\n",
                "lease.advertise-url",
            ),
            ("fuse: {dir: /x}\ndata: {dir: /y}\nlease: {type: consul}\n", "lease.consul"),
            (
                "fuse: {dir: /x}\ndata: {dir: /y}\nlease: {type: consul, consul: {key: k}}\n",
                "lease.consul.url",
            ),
            (
                "fuse: {dir: /x}\ndata: {dir: /y}\nlease: {type: consul, consul: {url: u}}\n",
                "lease.consul.key",
            ),
            (
                "fuse: {dir: /x}\ndata: {dir: /y}\nlease: {type: consul, consul: {url: u, key: k, ttl: 5s}}\n",
                "lease.consul.ttl",
            ),
            (
                "fuse: {dir: /x}\ndata: {dir: /y}\nlease: {type: static, databases: [a]}\n",
                "lease.databases",
            ),
            (
                "fuse: {dir: /x}\ndata: {dir: /y}\nlease: {type: static}\nlog: {format: xml}\n",
                "log.format",
            ),
        ];
        for (text, key) in cases {
            match parse(text) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
