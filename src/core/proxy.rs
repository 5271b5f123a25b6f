//! The HTTP proxy's decisions (`proxy:` in the config), sans-IO: which requests are reads
//! and which are writes, where each goes (the local app, the primary, or a wait for this
//! node to catch up), the `__txid` cookie that gives a client read-your-writes, and whether
//! a forwarded request that failed may be sent again.
//!
//! LiteFS's rules, kept: a path matching `passthrough` goes to the app untouched;
//! `GET /litefs/health` is the proxy's own; `GET` and `HEAD` are reads unless the path
//! matches `always-forward`; every other method is a write. Patterns have one wildcard,
//! `*` (any run of characters, `/` included), and match the whole path.
//!
//! Changed from LiteFS: a write on a replica is forwarded to the primary (LiteFS answers
//! with Fly.io's `fly-replay` header), and a forwarded request is never executed twice
//! ([`may_retry`]).

use crate::core::types::Txid;

/// The cookie that carries a client's last write position.
pub const TXID_COOKIE: &str = "__txid";

/// How long the cookie lives (LiteFS: `Expires` five minutes ahead).
pub const COOKIE_MAX_AGE_S: u64 = 300;

/// The proxy's own health path.
pub const HEALTH_PATH: &str = "/litefs/health";

/// The first byte of a bidirectional stream that carries one forwarded HTTP/1.1 exchange
/// (`protocol.md` §16; the replication control stream has no kind byte).
pub const STREAM_PROXY: u8 = 0x02;

/// QUIC application error codes a primary resets a proxy stream with, before reading
/// anything of the request: none of them reached its app.
pub mod refusal {
    /// This node is no longer the primary: send the request to the new one.
    pub const NOT_PRIMARY: u32 = 0x50;
    /// The primary runs no proxy (no `proxy:` in its config).
    pub const NO_PROXY: u32 = 0x51;
    /// The stream's kind byte is not one this node knows.
    pub const UNKNOWN_STREAM: u32 = 0x52;
}

/// Largest request body a replica holds in memory so that it can send the request again
/// when the primary provably did not run it; larger bodies stream and are never resent.
pub const REPLAY_LIMIT: u64 = 1024 * 1024;

/// A path pattern: literal text with `*` wildcards, matched against the whole path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The literal pieces between the wildcards (`a*b*` is `["a", "b", ""]`).
    pieces: Vec<String>,
}

impl Pattern {
    pub fn new(s: &str) -> Pattern {
        Pattern { pieces: s.split('*').map(str::to_owned).collect() }
    }

    /// Whether `path` matches: the first piece is a prefix, the last a suffix, and the ones
    /// between occur in order (leftmost each, which is enough for `*` alone).
    pub fn matches(&self, path: &str) -> bool {
        let (first, rest) = match self.pieces.split_first() {
            Some(x) => x,
            None => return path.is_empty(),
        };
        let Some(mut tail) = path.strip_prefix(first.as_str()) else { return false };
        let Some((last, middle)) = rest.split_last() else { return tail.is_empty() };
        for piece in middle {
            match tail.find(piece.as_str()) {
                Some(i) => tail = &tail[i + piece.len()..],
                None => return false,
            }
        }
        tail.len() >= last.len() && tail.ends_with(last.as_str())
    }
}

/// What a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Sent to the app untouched, on any node.
    Passthrough,
    /// `GET /litefs/health`, answered by the proxy.
    Health,
    Read,
    Write,
}

/// Classifies a request by method and path (LiteFS's rules, see the module docs).
pub fn classify(
    method: &str,
    path: &str,
    passthrough: &[Pattern],
    always_forward: &[Pattern],
) -> Class {
    if passthrough.iter().any(|p| p.matches(path)) {
        return Class::Passthrough;
    }
    let read = method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD");
    if read && path == HEALTH_PATH {
        return Class::Health;
    }
    if read && !always_forward.iter().any(|p| p.matches(path)) { Class::Read } else { Class::Write }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To the local app now.
    Local,
    /// To the local app once this node's copy of the database reached `Txid` (a read with
    /// a cookie newer than this node's position).
    WaitThenLocal(Txid),
    /// To the primary, over the cluster's connection (a write on a replica).
    Forward,
    /// Nobody is known to be the primary: hold the write until one is (or time out: 503).
    AwaitPrimary,
}

/// The node's state a route is decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeView {
    pub is_primary: bool,
    /// A primary is known (this node, or the one it follows).
    pub primary_known: bool,
    /// This node's position of `proxy.db` (zero when it has none).
    pub local_txid: Txid,
}

/// Decides where a request of class `class`, carrying the cookie position `cookie`, goes.
pub fn route(class: Class, cookie: Option<Txid>, node: NodeView) -> Route {
    match class {
        Class::Passthrough | Class::Health => Route::Local,
        Class::Read => match cookie {
            Some(t) if t > node.local_txid && !node.is_primary => Route::WaitThenLocal(t),
            _ => Route::Local,
        },
        Class::Write if node.is_primary => Route::Local,
        Class::Write if node.primary_known => Route::Forward,
        Class::Write => Route::AwaitPrimary,
    }
}

/// The `__txid` position in a request's `Cookie` header values, if any (the last one wins;
/// a malformed value is no cookie).
pub fn txid_cookie<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Txid> {
    let mut found = None;
    for h in headers {
        for pair in h.split(';') {
            let Some((k, v)) = pair.trim().split_once('=') else { continue };
            if k.trim() == TXID_COOKIE {
                found = u64::from_str_radix(v.trim().trim_matches('"'), 16).ok().map(Txid);
            }
        }
    }
    found
}

/// The `Set-Cookie` value a write's response carries: the position after it.
pub fn set_cookie(txid: Txid) -> String {
    format!("{TXID_COOKIE}={:016x}; Path=/; Max-Age={COOKIE_MAX_AGE_S}; HttpOnly", txid.0)
}

/// How far a forwarded request got before it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardFailure {
    /// No byte of the request left this node (no connection to the primary, or the stream
    /// could not be opened): the primary's app cannot have seen it.
    NotSent,
    /// The primary refused the stream before passing anything to its app (it is no longer
    /// the primary): its app did not see it.
    RefusedUnseen,
    /// The request was sent (in part or whole) and no complete response came back: the
    /// primary's app may have run it.
    Unknown,
}

/// Whether a forwarded request that failed so may be sent again (to the same or a new
/// primary): only when it provably never reached the primary's app. Otherwise the client
/// gets 502 saying that the request may have run.
pub fn may_retry(f: ForwardFailure) -> bool {
    matches!(f, ForwardFailure::NotSent | ForwardFailure::RefusedUnseen)
}

/// What a forwarding node does after an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Send it again once another primary is known (or this node became it); if its body
    /// streamed and cannot be sent again, 503: it did not run.
    Again,
    /// 408: its body did not arrive within `read-timeout`; the app got a request cut short,
    /// which it cannot have run.
    TooSlow,
    /// 502: the request may have run on the primary.
    MayHaveRun,
    /// 502: the primary refused it unread for good (it runs no proxy); it did not run.
    Refused,
}

/// Decides what follows a failed attempt that got as far as `how`; `for_good`: the primary
/// refused it unread for a reason another try cannot change; `body_late`: the client's body
/// missed `read-timeout`.
pub fn after_failure(how: ForwardFailure, for_good: bool, body_late: bool) -> AfterFailure {
    if body_late {
        AfterFailure::TooSlow
    } else if !may_retry(how) {
        AfterFailure::MayHaveRun
    } else if for_good {
        AfterFailure::Refused
    } else {
        AfterFailure::Again
    }
}

/// Headers a proxy must not pass on (RFC 9110 §7.6.1), besides those `Connection` names.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Whether header `name` (lower case) is hop-by-hop for a message whose `Connection`
/// header values are `connection` (`upgrade` is kept for a WebSocket handshake, which
/// the proxy forwards as an upgrade).
pub fn is_hop_by_hop<'a>(
    name: &str,
    connection: impl IntoIterator<Item = &'a str>,
    upgrade: bool,
) -> bool {
    if name == "upgrade" {
        return !upgrade;
    }
    HOP_BY_HOP.contains(&name)
        || connection
            .into_iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(name) && !(upgrade && name == "upgrade"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(v: &[&str]) -> Vec<Pattern> {
        v.iter().map(|s| Pattern::new(s)).collect()
    }

    #[test]
    fn patterns_match_whole_paths_with_star() {
        let p = Pattern::new("/static/*");
        assert!(p.matches("/static/"));
        assert!(p.matches("/static/a/b.css"));
        assert!(!p.matches("/statics"));
        assert!(!p.matches("/x/static/a"));
        assert!(Pattern::new("/api/*/events").matches("/api/v1/events"));
        assert!(!Pattern::new("/api/*/events").matches("/api/v1/events/x"));
        assert!(Pattern::new("*.json").matches("/a/b.json"));
        assert!(Pattern::new("/exact").matches("/exact"));
        assert!(!Pattern::new("/exact").matches("/exact/"));
        assert!(Pattern::new("*").matches("/anything"));
        // The last piece may not overlap the middle one.
        assert!(!Pattern::new("/a*bc*bc").matches("/abc"));
        assert!(Pattern::new("/a*bc*bc").matches("/abcbc"));
    }

    #[test]
    fn classification_is_litefs_s() {
        let pass = pats(&["/assets/*"]);
        let fwd = pats(&["/login"]);
        assert_eq!(classify("GET", "/assets/x.js", &pass, &fwd), Class::Passthrough);
        assert_eq!(classify("POST", "/assets/x.js", &pass, &fwd), Class::Passthrough);
        assert_eq!(classify("GET", "/litefs/health", &pass, &fwd), Class::Health);
        assert_eq!(classify("POST", "/litefs/health", &pass, &fwd), Class::Write);
        assert_eq!(classify("GET", "/", &pass, &fwd), Class::Read);
        assert_eq!(classify("head", "/", &pass, &fwd), Class::Read);
        assert_eq!(classify("GET", "/login", &pass, &fwd), Class::Write);
        for m in ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            assert_eq!(classify(m, "/", &pass, &fwd), Class::Write, "{m}");
        }
    }

    #[test]
    fn routes() {
        let replica = NodeView { is_primary: false, primary_known: true, local_txid: Txid(10) };
        let primary = NodeView { is_primary: true, ..replica };
        let orphan = NodeView { primary_known: false, ..replica };
        assert_eq!(route(Class::Read, None, replica), Route::Local);
        assert_eq!(route(Class::Read, Some(Txid(10)), replica), Route::Local);
        assert_eq!(route(Class::Read, Some(Txid(11)), replica), Route::WaitThenLocal(Txid(11)));
        // The primary has every position it handed out.
        assert_eq!(route(Class::Read, Some(Txid(11)), primary), Route::Local);
        assert_eq!(route(Class::Write, None, primary), Route::Local);
        assert_eq!(route(Class::Write, None, replica), Route::Forward);
        assert_eq!(route(Class::Write, None, orphan), Route::AwaitPrimary);
        assert_eq!(route(Class::Passthrough, None, orphan), Route::Local);
        assert_eq!(route(Class::Health, Some(Txid(99)), replica), Route::Local);
    }

    #[test]
    fn the_txid_cookie_round_trips_and_bad_values_are_ignored() {
        let c = set_cookie(Txid(0x2a));
        assert!(c.starts_with("__txid=000000000000002a;"), "{c}");
        assert!(c.contains("Path=/") && c.contains("HttpOnly") && c.contains("Max-Age=300"));
        let value = c.split(';').next().unwrap();
        assert_eq!(txid_cookie([value]), Some(Txid(0x2a)));
        assert_eq!(txid_cookie(["a=1; __txid=00000000000000ff; b=2"]), Some(Txid(0xff)));
        assert_eq!(txid_cookie(["__txid=1", "__txid=2"]), Some(Txid(2)));
        assert_eq!(txid_cookie(["__txid=zz"]), None);
        assert_eq!(txid_cookie(["other=1"]), None);
        assert_eq!(txid_cookie([]), None);
    }

    #[test]
    fn only_requests_that_never_reached_the_app_are_retried() {
        assert!(may_retry(ForwardFailure::NotSent));
        assert!(may_retry(ForwardFailure::RefusedUnseen));
        assert!(!may_retry(ForwardFailure::Unknown));
    }

    #[test]
    fn what_follows_a_failed_forward() {
        use AfterFailure::*;
        use ForwardFailure::*;
        assert_eq!(after_failure(NotSent, false, false), Again);
        assert_eq!(after_failure(RefusedUnseen, false, false), Again);
        assert_eq!(after_failure(RefusedUnseen, true, false), Refused);
        assert_eq!(after_failure(Unknown, false, false), MayHaveRun);
        assert_eq!(after_failure(Unknown, true, false), MayHaveRun);
        // A body that never arrived whole cannot have run, however far it got.
        for how in [NotSent, RefusedUnseen, Unknown] {
            assert_eq!(after_failure(how, false, true), TooSlow);
        }
    }

    #[test]
    fn hop_by_hop_headers() {
        assert!(is_hop_by_hop("connection", [], false));
        assert!(is_hop_by_hop("transfer-encoding", [], false));
        assert!(is_hop_by_hop("x-custom", ["keep-alive, X-Custom"], false));
        assert!(!is_hop_by_hop("x-forwarded-for", ["keep-alive"], false));
        assert!(is_hop_by_hop("upgrade", ["upgrade"], false));
        assert!(!is_hop_by_hop("upgrade", ["upgrade"], true));
        assert!(!is_hop_by_hop("content-type", [], true));
    }
}
