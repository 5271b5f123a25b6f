//! Leases: which node may accept writes. A [`LeaseBackend`] talks to whatever stores the
//! lease (the static configuration today; Consul later); the lease actor ([`actor`]) drives
//! the sans-IO [`LeaseMachine`](crate::core::lease::LeaseMachine) with the backend's answers
//! and the clock, and reports every change of [`LeaseView`].

pub mod actor;
pub mod consul;

use std::future::Future;
use std::pin::Pin;

use crate::core::lease::{Holder, Timing};
use crate::core::types::Epoch;

pub use crate::core::lease::LeaseView;

/// Errors of a lease backend.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The lease this node held is gone (expired or taken): demote at once.
    #[error("lease lost: {0}")]
    Lost(String),
    /// The backend could not be reached or answered badly: retry; the local deadline
    /// demotes the node if this lasts.
    #[error("lease backend unavailable: {0}")]
    Unavailable(String),
}

/// A boxed future, so backends stay object-safe.
pub type LeaseFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LeaseError>> + Send + 'a>>;

/// Where the lease lives. Implementations only talk to their store; every decision (when
/// to renew, when to demote) is the [`LeaseMachine`](crate::core::lease::LeaseMachine)'s.
pub trait LeaseBackend: Send + Sync + 'static {
    /// `static`, `consul`, ... for logs.
    fn kind(&self) -> &'static str;
    /// TTL and safety margin; `None` for a lease that never expires.
    fn timing(&self) -> Option<Timing>;
    /// Tries to take the lease: `Some(epoch)` when this node holds it now, `None` when
    /// another node does.
    fn acquire(&self) -> LeaseFuture<'_, Option<Epoch>>;
    /// Renews the lease this node holds; [`LeaseError::Lost`] when it is gone.
    fn renew(&self) -> LeaseFuture<'_, Epoch>;
    /// Gives the lease up (shutdown, handoff).
    fn release(&self) -> LeaseFuture<'_, ()>;
    /// Who else holds the lease (`None`: nobody; this node's own term is never reported).
    /// `after` is the index returned by the previous call (0 the first time): the call
    /// waits until something changes after it, so replicas learn of a new primary at once.
    fn watch(&self, after: u64) -> LeaseFuture<'_, (u64, Option<Holder>)>;
    /// This node suspects the current holder is gone (fast failover): record the
    /// suspicion and, once enough nodes agree, end the holder's term early. Returns whether
    /// the term was ended. Safe at any time only because the backend then keeps the lease
    /// from everyone for longer than the holder's write fence (`protocol.md` §10).
    fn depose(&self) -> LeaseFuture<'_, bool> {
        Box::pin(async { Ok(false) })
    }
    /// Graceful handoff, on the node that wants the lease: a token the holder can hand the
    /// lease to (Consul: a live session of this node's). Backends without handoff refuse.
    fn handoff_token(&self) -> LeaseFuture<'_, String> {
        Box::pin(async { Err(LeaseError::Unavailable("this lease cannot be handed over".into())) })
    }
    /// Graceful handoff, on the holder: moves the lease it holds to the node that gave
    /// `token`, atomically (nobody else can take it in between). The new holder's term
    /// starts at once: the caller must have stopped writes first.
    fn hand_off<'a>(&'a self, token: &'a str, to: &'a Holder) -> LeaseFuture<'a, ()> {
        let _ = (token, to);
        Box::pin(async { Err(LeaseError::Unavailable("this lease cannot be handed over".into())) })
    }
}

/// LiteFS's static lease: the node with `lease.candidate: true` is always the primary;
/// the others always follow `lease.advertise-url`.
pub struct StaticLease {
    candidate: bool,
    primary: Holder,
}

/// The static primary's epoch: static clusters never change primaries.
pub const STATIC_EPOCH: Epoch = Epoch(1);

impl StaticLease {
    /// `primary_url` is the primary's advertise URL (a replica's `lease.advertise-url`).
    pub fn new(candidate: bool, primary_hostname: String, primary_url: String) -> StaticLease {
        StaticLease {
            candidate,
            primary: Holder { hostname: primary_hostname, advertise_url: primary_url },
        }
    }
}

impl LeaseBackend for StaticLease {
    fn kind(&self) -> &'static str {
        "static"
    }

    fn timing(&self) -> Option<Timing> {
        None
    }

    fn acquire(&self) -> LeaseFuture<'_, Option<Epoch>> {
        let r = self.candidate.then_some(STATIC_EPOCH);
        Box::pin(async move { Ok(r) })
    }

    fn renew(&self) -> LeaseFuture<'_, Epoch> {
        let r = if self.candidate {
            Ok(STATIC_EPOCH)
        } else {
            Err(LeaseError::Lost("a static replica never holds the lease".into()))
        };
        Box::pin(async move { r })
    }

    fn release(&self) -> LeaseFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn watch(&self, after: u64) -> LeaseFuture<'_, (u64, Option<Holder>)> {
        let holder = (!self.candidate).then(|| self.primary.clone());
        Box::pin(async move {
            if after == 0 {
                return Ok((1, holder));
            }
            // Nothing ever changes.
            std::future::pending().await
        })
    }
}
