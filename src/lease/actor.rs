//! The lease actor: runs the backend's calls as tasks, feeds their answers and the clock
//! to the [`LeaseMachine`], and reports each new [`LeaseView`] through `on_change`.
//!
//! Hazard: `on_change` runs inside the actor and must act at once (the supervisor makes the
//! mount read-only synchronously): a demotion reported late is a window with two writable
//! primaries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;

use tokio::sync::oneshot;

use super::{LeaseBackend, LeaseError, LeaseView};
use crate::core::lease::{Holder, LeaseAction, LeaseEvent, LeaseMachine};

/// Pause between failed backend watches.
const WATCH_RETRY: Duration = Duration::from_secs(1);

pub enum LeaseMsg {
    Event(LeaseEvent),
    /// Timer: renewal, deadline or acquire retry.
    Tick,
    /// The supervisor heard nothing from the primary for the failover timeout.
    Depose,
    /// Graceful handoff, target side: a token the holder can hand the lease to.
    Token {
        reply: oneshot::Sender<Result<String, LeaseError>>,
    },
    /// Graceful handoff, holder side (writes already stopped): move the lease to the node
    /// that gave `token`.
    HandOff {
        token: String,
        to: Holder,
        reply: oneshot::Sender<Result<(), LeaseError>>,
    },
}

pub struct LeaseArgs {
    pub backend: Arc<dyn LeaseBackend>,
    pub candidate: bool,
    pub on_change: Box<dyn Fn(LeaseView) + Send + Sync>,
    /// Told the write fence after every event: writes must stop at this instant (`None`:
    /// never). Runs inside the actor, like `on_change`.
    pub on_fence: Box<dyn Fn(Option<Instant>) + Send + Sync>,
}

pub struct LeaseActor;

pub struct LeaseState {
    backend: Arc<dyn LeaseBackend>,
    machine: LeaseMachine,
    on_change: Box<dyn Fn(LeaseView) + Send + Sync>,
    on_fence: Box<dyn Fn(Option<Instant>) + Send + Sync>,
    watcher: JoinHandle<()>,
    /// When the pending timer fires, if one is pending.
    tick_at: Option<u64>,
}

impl LeaseState {
    fn now_ms(&self) -> u64 {
        crate::clock::mono().0
    }

    fn run(&mut self, myself: &ActorRef<LeaseMsg>, actions: Vec<LeaseAction>) {
        // The fence first: a demotion below must not be preceded by a later fence.
        let until = match self.machine.write_until_ms() {
            u64::MAX => None,
            ms => Some(crate::clock::instant(crate::core::types::Millis(ms))),
        };
        (self.on_fence)(until);
        for a in actions {
            match a {
                LeaseAction::Publish(view) => {
                    tracing::info!(?view, "lease changed");
                    (self.on_change)(view);
                }
                LeaseAction::Acquire => {
                    let (b, me, sent_ms) = (self.backend.clone(), myself.clone(), self.now_ms());
                    tokio::spawn(async move {
                        let ev = match b.acquire().await {
                            Ok(Some(epoch)) => LeaseEvent::Granted { epoch, sent_ms },
                            Ok(None) => LeaseEvent::Refused,
                            Err(e) => {
                                tracing::warn!(error = %e, "acquiring the lease failed");
                                LeaseEvent::Refused
                            }
                        };
                        let _ = me.send_message(LeaseMsg::Event(ev));
                    });
                }
                LeaseAction::Renew => {
                    let (b, me, sent_ms) = (self.backend.clone(), myself.clone(), self.now_ms());
                    tokio::spawn(async move {
                        let ev = match b.renew().await {
                            Ok(epoch) => LeaseEvent::Granted { epoch, sent_ms },
                            Err(LeaseError::Lost(e)) => {
                                tracing::warn!(error = %e, "lease lost");
                                LeaseEvent::RenewFailed { lost: true }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "renewing the lease failed");
                                LeaseEvent::RenewFailed { lost: false }
                            }
                        };
                        let _ = me.send_message(LeaseMsg::Event(ev));
                    });
                }
            }
        }
        // One timer at a time, for the earliest time the machine asks for.
        if let Some(at) = self.machine.next_tick_ms()
            && self.tick_at.is_none_or(|t| at < t)
        {
            self.tick_at = Some(at);
            let wait = at.saturating_sub(self.now_ms());
            myself.send_after(Duration::from_millis(wait), || LeaseMsg::Tick);
        }
    }
}

impl Actor for LeaseActor {
    type Msg = LeaseMsg;
    type State = LeaseState;
    type Arguments = LeaseArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<LeaseMsg>,
        args: LeaseArgs,
    ) -> Result<LeaseState, ActorProcessingErr> {
        let timing = args.backend.timing();
        tracing::info!(kind = args.backend.kind(), candidate = args.candidate, ?timing, "lease");
        let (b, me) = (args.backend.clone(), myself.clone());
        let watcher = tokio::spawn(async move {
            let mut index = 0;
            loop {
                match b.watch(index).await {
                    Ok((i, holder)) => {
                        index = i;
                        let _ = me.send_message(LeaseMsg::Event(LeaseEvent::Holder(holder)));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "watching the lease failed; retrying");
                        index = 0;
                        tokio::time::sleep(WATCH_RETRY).await;
                    }
                }
            }
        });
        let mut st = LeaseState {
            backend: args.backend,
            machine: LeaseMachine::new(args.candidate, timing),
            on_change: args.on_change,
            on_fence: args.on_fence,
            watcher,
            tick_at: None,
        };
        let first = st.machine.start();
        st.run(&myself, first);
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<LeaseMsg>,
        msg: LeaseMsg,
        st: &mut LeaseState,
    ) -> Result<(), ActorProcessingErr> {
        let now = st.now_ms();
        let actions = match msg {
            LeaseMsg::Event(ev) => st.machine.handle(ev, now),
            LeaseMsg::Tick => {
                // Any timer firing clears the mark; `run` arms the next one (a spare
                // timer only causes a spare tick, never a missed one).
                st.tick_at = None;
                st.machine.handle(LeaseEvent::Tick, now)
            }
            LeaseMsg::Depose => {
                if matches!(st.machine.view(), LeaseView::Replica { holder: Some(_) }) {
                    let b = st.backend.clone();
                    tokio::spawn(async move {
                        if let Err(e) = b.depose().await {
                            tracing::warn!(error = %e, "deposing a silent primary failed");
                        }
                    });
                }
                Vec::new()
            }
            LeaseMsg::Token { reply } => {
                let b = st.backend.clone();
                tokio::spawn(async move {
                    let _ = reply.send(b.handoff_token().await);
                });
                Vec::new()
            }
            LeaseMsg::HandOff { token, to, reply } => {
                if !matches!(st.machine.view(), LeaseView::Primary { .. }) {
                    let _ = reply.send(Err(LeaseError::Lost("not the lease holder".into())));
                    return Ok(());
                }
                let (b, me) = (st.backend.clone(), myself.clone());
                tokio::spawn(async move {
                    let r = b.hand_off(&token, &to).await;
                    if r.is_ok() {
                        // Our term ended: demote now rather than when the watch says so.
                        let _ = me.send_message(LeaseMsg::Event(LeaseEvent::Holder(Some(to))));
                    }
                    let _ = reply.send(r);
                });
                Vec::new()
            }
        };
        st.run(&myself, actions);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<LeaseMsg>,
        st: &mut LeaseState,
    ) -> Result<(), ActorProcessingErr> {
        st.watcher.abort();
        if matches!(st.machine.view(), LeaseView::Primary { .. }) {
            (st.on_change)(LeaseView::Replica { holder: None });
            if let Err(e) = st.backend.release().await {
                tracing::warn!(error = %e, "releasing the lease failed");
            }
        }
        Ok(())
    }
}
