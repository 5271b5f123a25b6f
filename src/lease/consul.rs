//! The Consul lease, with LiteFS's semantics so existing tooling keeps working:
//!
//! - a session with no health checks, `Behavior: delete`, the configured TTL and lock-delay;
//! - KV acquire of `<prefix>/<key>` with the value `{"hostname":…,"advertise-url":…}`;
//! - renew = session renew (a 404 means the lease is gone); release = KV release, then
//!   session destroy;
//! - who holds it = the key's value and session, watched with blocking queries so replicas
//!   hear of a new primary at once.
//!
//! The lease epoch is the key's `ModifyIndex` right after this node's acquire: a Raft index,
//! so it only grows, also across the key's deletion by `Behavior: delete` (the key's
//! `LockIndex` would restart at 1).
//!
//! Every decision (when to renew, when to demote) is the lease machine's; this file only
//! speaks HTTP. `lease.consul.url` may carry the ACL token as the password of its userinfo
//! and a key prefix as its path, as in LiteFS.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;

use super::{LeaseBackend, LeaseError, LeaseFuture};
use crate::core::lease::{Deference, Holder, Positions, Timing, preferred};
use crate::core::types::Epoch;

/// How long one blocking query waits before Consul answers unchanged.
const WATCH_WAIT: Duration = Duration::from_secs(30);
/// Deadline for every other request: a hung Consul must not hold a renewal past the
/// lease machine's deadline (which demotes regardless).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Subtracted from the TTL for the local deadline (see `core::lease`).
const MARGIN: Duration = Duration::from_secs(1);

/// The primary's write fence for a lock-delay: three quarters of it, so the fence (counted
/// from a renew's *send* time) ends before Consul lets anyone else take the key after the
/// session is invalidated, with a quarter left for clock rate differences and scheduling.
pub fn fence(lock_delay: Duration) -> Duration {
    lock_delay * 3 / 4
}

/// Errors building the client from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConsulConfigError {
    #[error("lease.consul.url {0:?}: {1}")]
    Url(String, String),
}

pub struct ConsulLease {
    http: reqwest::Client,
    /// `scheme://host:port`.
    base: String,
    token: Option<String>,
    /// Full KV key (prefix + key).
    key: String,
    ttl: Duration,
    lock_delay: Duration,
    /// Suspicions needed to destroy a holder's session.
    quorum: u32,
    me: Holder,
    /// Session and the epoch of the term it holds.
    session: Mutex<Option<(String, Option<Epoch>)>>,
    /// The preference for up-to-date candidates (`protocol.md` §10.4), when enabled.
    election: Option<Election>,
}

/// What the election preference reads from the node: the round (the epoch of the last
/// primary it followed) and the TXID of each of its databases.
pub type PositionsFn = Arc<dyn Fn() -> (u64, Positions) + Send + Sync>;

struct Election {
    positions: PositionsFn,
    deference: Mutex<Deference>,
    /// Clock base for the deference (the shell owns the clock).
    base: std::time::Instant,
}

/// A candidate's published positions, at `<key>-candidates/<hostname>`.
#[derive(serde::Serialize, Deserialize)]
struct Record {
    round: u64,
    pos: Positions,
}

#[derive(Deserialize)]
struct KvEntry {
    #[serde(rename = "ModifyIndex")]
    modify_index: u64,
    #[serde(rename = "Session", default)]
    session: Option<String>,
    #[serde(rename = "Value", default)]
    value: Option<String>,
    #[serde(rename = "Key", default)]
    key: String,
}

#[derive(Deserialize)]
struct LeaseValue {
    hostname: String,
    #[serde(rename = "advertise-url")]
    advertise_url: String,
}

fn unavailable(e: impl std::fmt::Display) -> LeaseError {
    LeaseError::Unavailable(e.to_string())
}

impl ConsulLease {
    pub fn new(
        url: &str,
        key: &str,
        ttl: Duration,
        lock_delay: Duration,
        quorum: u32,
        me: Holder,
    ) -> Result<ConsulLease, ConsulConfigError> {
        let bad = |m: &str| ConsulConfigError::Url(url.to_owned(), m.to_owned());
        let u = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if u.scheme() != "http" {
            return Err(bad("only http:// is supported (run a local Consul agent)"));
        }
        let host = u.host_str().ok_or_else(|| bad("no host"))?;
        let base = format!("http://{host}:{}", u.port().unwrap_or(8500));
        let token = u.password().map(str::to_owned);
        let prefix = u.path().trim_matches('/');
        let key = if prefix.is_empty() {
            key.trim_matches('/').to_owned()
        } else {
            format!("{prefix}/{}", key.trim_matches('/'))
        };
        let http = reqwest::Client::builder()
            .connect_timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(ConsulLease {
            http,
            base,
            token,
            key,
            ttl,
            lock_delay,
            quorum,
            me,
            session: Mutex::new(None),
            election: None,
        })
    }

    /// Prefer up-to-date candidates (`protocol.md` §10.4): before each acquire of a free
    /// key, publish `positions` and hold back (for at most the lock-delay + 1 s per
    /// election) while another candidate's published positions are `preferred`.
    pub fn prefer_up_to_date(mut self, positions: PositionsFn) -> ConsulLease {
        let after = self.lock_delay + Duration::from_secs(1);
        self.election = Some(Election {
            positions,
            deference: Mutex::new(Deference::new(after.as_millis() as u64)),
            #[allow(clippy::disallowed_methods)] // the shell owns the clock
            base: std::time::Instant::now(),
        });
        self
    }

    /// Writes `body` at `<dir>/<hostname>`, then lists `dir`: every entry's key and decoded
    /// value (this node's own included). `what` names the record in errors.
    async fn publish_and_list(
        &self,
        dir: &str,
        body: String,
        what: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, LeaseError> {
        let r = self
            .req(reqwest::Method::PUT, &format!("/v1/kv/{dir}/{}", self.me.hostname))
            .body(body)
            .send()
            .await
            .map_err(unavailable)?;
        if !r.status().is_success() {
            return Err(unavailable(format!("kv put {what}: {}", r.status())));
        }
        let r = self
            .req(reqwest::Method::GET, &format!("/v1/kv/{dir}/?recurse"))
            .send()
            .await
            .map_err(unavailable)?;
        let all: Vec<KvEntry> = if r.status().is_success() {
            serde_json::from_str(&text(r).await).map_err(|e| unavailable(format!("{e}")))?
        } else {
            Vec::new()
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(all.into_iter().filter_map(|e| Some((e.key, b64.decode(e.value?).ok()?))).collect())
    }

    /// Whether to let a more up-to-date candidate take the free key first (see
    /// [`ConsulLease::prefer_up_to_date`]).
    async fn hold_back(&self) -> Result<bool, LeaseError> {
        let Some(el) = &self.election else { return Ok(false) };
        // Only for a free key: a held one (ours after a handoff, or another's) is for the
        // acquire to answer.
        let (_, entry) = self.read(0, None).await?;
        if entry.and_then(|e| e.session).is_some_and(|s| !s.is_empty()) {
            return Ok(false);
        }
        let (round, mine) = (el.positions)();
        let dir = format!("{}-candidates", self.key);
        let own = format!("{dir}/{}", self.me.hostname);
        let record = serde_json::to_string(&Record { round, pos: mine.clone() })
            .map_err(|e| unavailable(format!("{e}")))?;
        let all = self.publish_and_list(&dir, record, "positions").await?;
        let better = all.iter().filter(|(k, _)| *k != own).find_map(|(k, v)| {
            let other: Record = serde_json::from_slice(v).ok()?;
            preferred((other.round, &other.pos), (round, &mine))
                .then(|| k.rsplit('/').next().unwrap_or_default().to_owned())
        });
        let now_ms = el.base.elapsed().as_millis() as u64;
        let hold = el.deference.lock().unwrap_or_else(|e| e.into_inner()).hold_back(
            round,
            better.is_some(),
            now_ms,
        );
        tracing::debug!(
            round,
            ?mine,
            ?better,
            others = all.len(),
            hold,
            "election: positions compared"
        );
        if hold && let Some(b) = &better {
            tracing::info!(ahead = %b, round, "a more up-to-date candidate exists; letting it take the lease first");
        }
        Ok(hold)
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base)).timeout(REQUEST_TIMEOUT);
        match &self.token {
            Some(t) => r.header("X-Consul-Token", t),
            None => r,
        }
    }

    fn session(&self) -> Option<(String, Option<Epoch>)> {
        self.session.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_session(&self, s: Option<(String, Option<Epoch>)>) {
        *self.session.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    async fn create_session(&self) -> Result<String, LeaseError> {
        let body = serde_json::json!({
            "Name": "litefleet",
            "Behavior": "delete",
            "TTL": format!("{}s", self.ttl.as_secs().max(10)),
            "LockDelay": format!("{}ms", self.lock_delay.as_millis()),
            "Checks": [],
            "NodeChecks": [],
            "ServiceChecks": [],
        });
        let resp = self
            .req(reqwest::Method::PUT, "/v1/session/create")
            .body(body.to_string())
            .send()
            .await
            .map_err(unavailable)?;
        if !resp.status().is_success() {
            let st = resp.status();
            return Err(unavailable(format!("session create: {st}: {}", text(resp).await)));
        }
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "ID")]
            id: String,
        }
        let c: Created =
            serde_json::from_str(&text(resp).await).map_err(|e| unavailable(format!("{e}")))?;
        Ok(c.id)
    }

    /// The key's entry, and Consul's index for blocking queries.
    async fn read(
        &self,
        index: u64,
        wait: Option<Duration>,
    ) -> Result<(u64, Option<KvEntry>), LeaseError> {
        let mut path = format!("/v1/kv/{}", self.key);
        if let Some(w) = wait {
            path.push_str(&format!("?index={index}&wait={}ms", w.as_millis()));
        }
        let mut r = self.req(reqwest::Method::GET, &path);
        if let Some(w) = wait {
            // Consul adds up to wait/16 of jitter.
            r = r.timeout(w + w / 8 + REQUEST_TIMEOUT);
        }
        let resp = r.send().await.map_err(unavailable)?;
        let idx = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok((idx, None));
        }
        if !resp.status().is_success() {
            let st = resp.status();
            return Err(unavailable(format!("kv get: {st}: {}", text(resp).await)));
        }
        let mut v: Vec<KvEntry> =
            serde_json::from_str(&text(resp).await).map_err(|e| unavailable(format!("{e}")))?;
        Ok((idx, v.pop()))
    }

    fn holder_of(&self, e: &KvEntry) -> Option<Holder> {
        let session = e.session.as_deref().filter(|s| !s.is_empty())?;
        if self.session().is_some_and(|(mine, _)| mine == session) {
            return None; // our own term is reported through acquire/renew
        }
        let raw = base64::engine::general_purpose::STANDARD.decode(e.value.as_deref()?).ok()?;
        let v: LeaseValue = serde_json::from_slice(&raw).ok()?;
        Some(Holder { hostname: v.hostname, advertise_url: v.advertise_url })
    }
}

async fn text(resp: reqwest::Response) -> String {
    resp.text().await.unwrap_or_default().trim().to_owned()
}

impl LeaseBackend for ConsulLease {
    fn kind(&self) -> &'static str {
        "consul"
    }

    fn timing(&self) -> Option<Timing> {
        Some(Timing {
            ttl_ms: self.ttl.as_millis() as u64,
            margin_ms: MARGIN.as_millis() as u64,
            fence_ms: Some(fence(self.lock_delay).as_millis() as u64),
        })
    }

    fn acquire(&self) -> LeaseFuture<'_, Option<Epoch>> {
        Box::pin(async move {
            if self.hold_back().await? {
                return Ok(None);
            }
            let sid = match self.session() {
                Some((sid, _)) => sid,
                None => {
                    let sid = self.create_session().await?;
                    self.set_session(Some((sid.clone(), None)));
                    sid
                }
            };
            let value = serde_json::json!({
                "hostname": self.me.hostname,
                "advertise-url": self.me.advertise_url,
            });
            let resp = self
                .req(reqwest::Method::PUT, &format!("/v1/kv/{}?acquire={sid}", self.key))
                .body(value.to_string())
                .send()
                .await
                .map_err(unavailable)?;
            let st = resp.status();
            let body = text(resp).await;
            if !st.is_success() {
                // An invalidated session ("invalid session"): start over with a new one.
                self.set_session(None);
                return Err(unavailable(format!("kv acquire: {st}: {body}")));
            }
            if body != "true" {
                return Ok(None);
            }
            // Holding the lock, nobody else can modify the key: its ModifyIndex is ours.
            let (_, entry) = self.read(0, None).await?;
            let Some(e) = entry.filter(|e| e.session.as_deref() == Some(sid.as_str())) else {
                return Err(LeaseError::Lost("the key changed right after acquire".into()));
            };
            let epoch = Epoch(e.modify_index);
            self.set_session(Some((sid, Some(epoch))));
            if self.election.is_some() {
                // The election is over: the published positions would only delay the next
                // one (a node restarting after a full outage would hold back for them).
                let dir = format!("/v1/kv/{}-candidates?recurse", self.key);
                let _ = self.req(reqwest::Method::DELETE, &dir).send().await;
            }
            Ok(Some(epoch))
        })
    }

    fn renew(&self) -> LeaseFuture<'_, Epoch> {
        Box::pin(async move {
            let Some((sid, Some(epoch))) = self.session() else {
                return Err(LeaseError::Lost("no lease held".into()));
            };
            let resp = self
                .req(reqwest::Method::PUT, &format!("/v1/session/renew/{sid}"))
                .send()
                .await
                .map_err(unavailable)?;
            match resp.status() {
                s if s.is_success() => Ok(epoch),
                reqwest::StatusCode::NOT_FOUND => {
                    self.set_session(None);
                    Err(LeaseError::Lost(format!("session {sid} expired")))
                }
                s => Err(unavailable(format!("session renew: {s}: {}", text(resp).await))),
            }
        })
    }

    fn release(&self) -> LeaseFuture<'_, ()> {
        Box::pin(async move {
            let Some((sid, _)) = self.session() else { return Ok(()) };
            self.set_session(None);
            let r = self
                .req(reqwest::Method::PUT, &format!("/v1/kv/{}?release={sid}", self.key))
                .send()
                .await
                .map_err(unavailable)?;
            if !r.status().is_success() {
                tracing::warn!(status = %r.status(), "Consul KV release refused");
            }
            self.req(reqwest::Method::PUT, &format!("/v1/session/destroy/{sid}"))
                .send()
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    /// Suspicions live at `<key>-suspects/<hostname>`, each holding the session id of the
    /// holder suspected, so suspicions of an earlier term never count for a later one.
    fn depose(&self) -> LeaseFuture<'_, bool> {
        Box::pin(async move {
            let (_, entry) = self.read(0, None).await?;
            let Some(sid) = entry.and_then(|e| e.session).filter(|s| !s.is_empty()) else {
                return Ok(false); // nobody holds it: nothing to depose
            };
            if self.session().is_some_and(|(mine, _)| mine == sid) {
                return Ok(false);
            }
            let dir = format!("{}-suspects", self.key);
            let all = self.publish_and_list(&dir, sid.clone(), "suspicion").await?;
            let agree = all.iter().filter(|(_, v)| v.as_slice() == sid.as_bytes()).count() as u32;
            if agree < self.quorum {
                tracing::info!(agree, quorum = self.quorum, "suspicion recorded; waiting for more");
                return Ok(false);
            }
            // Consul then keeps the key from everyone for the lock-delay, which outlasts
            // the holder's write fence (see `fence`).
            let r = self
                .req(reqwest::Method::PUT, &format!("/v1/session/destroy/{sid}"))
                .send()
                .await
                .map_err(unavailable)?;
            if !r.status().is_success() {
                return Err(unavailable(format!("session destroy: {}", r.status())));
            }
            tracing::warn!(session = %sid, agree, "primary suspected gone: its session was destroyed");
            Ok(true)
        })
    }

    /// A live session of this node's: the one it has if Consul still knows it (renewed
    /// now, so it outlives the handoff), else a new one.
    fn handoff_token(&self) -> LeaseFuture<'_, String> {
        Box::pin(async move {
            if let Some((sid, _)) = self.session() {
                let r = self
                    .req(reqwest::Method::PUT, &format!("/v1/session/renew/{sid}"))
                    .send()
                    .await
                    .map_err(unavailable)?;
                if r.status().is_success() {
                    return Ok(sid);
                }
            }
            let sid = self.create_session().await?;
            self.set_session(Some((sid.clone(), None)));
            Ok(sid)
        })
    }

    /// One Consul transaction: unlock the key with this node's session, lock it with the
    /// target's (and its value). Either both happen or neither; no lock-delay applies (no
    /// session was invalidated), so the target's term starts at once.
    fn hand_off<'a>(&'a self, token: &'a str, to: &'a Holder) -> LeaseFuture<'a, ()> {
        Box::pin(async move {
            let Some((sid, Some(_))) = self.session() else {
                return Err(LeaseError::Lost("no lease held".into()));
            };
            let b64 = |v: &serde_json::Value| {
                base64::engine::general_purpose::STANDARD.encode(v.to_string())
            };
            let mine = serde_json::json!({
                "hostname": self.me.hostname, "advertise-url": self.me.advertise_url,
            });
            let theirs = serde_json::json!({
                "hostname": to.hostname, "advertise-url": to.advertise_url,
            });
            let ops = serde_json::json!([
                {"KV": {"Verb": "unlock", "Key": self.key, "Value": b64(&mine), "Session": sid}},
                {"KV": {"Verb": "lock", "Key": self.key, "Value": b64(&theirs), "Session": token}},
            ]);
            let resp = self
                .req(reqwest::Method::PUT, "/v1/txn")
                .body(ops.to_string())
                .send()
                .await
                .map_err(unavailable)?;
            let st = resp.status();
            if !st.is_success() {
                return Err(unavailable(format!(
                    "handoff transaction: {st}: {}",
                    text(resp).await
                )));
            }
            // The key is the target's now: this session holds nothing. Destroying it only
            // ends its renewals (lock-delay applies to keys a session held when
            // invalidated: none).
            self.set_session(None);
            let _ =
                self.req(reqwest::Method::PUT, &format!("/v1/session/destroy/{sid}")).send().await;
            tracing::info!(to = %to.hostname, "lease handed over");
            Ok(())
        })
    }

    fn watch(&self, after: u64) -> LeaseFuture<'_, (u64, Option<Holder>)> {
        Box::pin(async move {
            let (mut idx, entry) = match after {
                0 => self.read(0, None).await?,
                n => self.read(n, Some(WATCH_WAIT)).await?,
            };
            // Consul's rules for blocking indexes: never go backwards, never 0.
            if idx < after {
                idx = 0;
            }
            Ok((idx.max(1), entry.as_ref().and_then(|e| self.holder_of(e))))
        })
    }
}
