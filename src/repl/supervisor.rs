//! The node's replication supervisor: parent of the lease actor and of every peer-link
//! actor, and the one place that turns a lease change into a role.
//!
//! - Lease says primary: the mount becomes writable, the QUIC server starts, and each
//!   accepted replica gets a peer-link actor.
//! - Lease says replica: the mount is made read-only *synchronously, inside the lease
//!   actor's callback* (before anyone else could be elected), the server stops, and a
//!   peer-link actor follows the holder.
//!
//! Restarts: a failed follower link is restarted with backoff (100 ms doubling to 3 s, reset
//! after a session that lasted 5 s); a failed lease actor is restarted after 1 s with the
//! node read-only meanwhile; a failed listener is restarted after 1 s. A replica's link on
//! the primary is not restarted: the replica redials.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::link::{LinkActor, LinkArgs};
use super::{Identity, ReplError, primary, replica};
use crate::core::lease::{LeaseView, Suspicion};
use crate::core::types::Epoch;
use crate::core::wire::Role;
use crate::lease::LeaseBackend;
use crate::lease::actor::{LeaseActor, LeaseArgs, LeaseMsg};
use crate::store::Store;
use crate::tls::Credentials;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(3);
const LONG_SESSION: Duration = Duration::from_secs(5);
const RESTART_DELAY: Duration = Duration::from_secs(1);

pub struct SupArgs {
    pub store: Arc<Store>,
    pub creds: Credentials,
    /// This node's identity; role and epoch follow the lease.
    pub id: Identity,
    /// Where the QUIC server listens while this node is the primary.
    pub listen: SocketAddr,
    /// `listen`, bound at startup (so a port in use fails startup): the first listener
    /// serves on it; later ones bind `listen` again.
    pub listen_socket: Option<std::net::UdpSocket>,
    /// `quic.primary-addr`: dial this instead of the holder's advertise URL.
    pub primary_override: Option<String>,
    pub backend: Arc<dyn LeaseBackend>,
    pub candidate: bool,
    /// Fast failover: suspect a primary not heard from for this long (candidates only).
    pub failover_after: Option<Duration>,
    /// `lease.promote`: ask the primary for the lease once following it.
    pub promote: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    Lease,
    Listener,
    Follower,
}

pub enum SupMsg {
    Lease(LeaseView),
    Restart(Child),
    /// Timer (fast failover): is the primary still heard from?
    CheckPrimary,
}

/// How often a replica that may depose its primary checks when it was last heard from.
const CHECK_EVERY: Duration = Duration::from_millis(100);

pub struct ReplSupervisor;

pub struct SupState {
    args: SupArgs,
    view: LeaseView,
    lease: Option<ActorRef<LeaseMsg>>,
    /// Fast failover: the check timer is armed; when the last suspicion was sent.
    checking: bool,
    /// Fast failover's decision (`None`: off).
    suspicion: Option<Suspicion>,
    server: Option<quinn::Endpoint>,
    listener: Option<ActorCell>,
    client: Option<quinn::Endpoint>,
    follower: Option<(ActorCell, Instant)>,
    links: HashSet<ActorId>,
    backoff: Duration,
    /// A follower ran since this node was last primary: replicated files were applied
    /// behind the FUSE side's back, which must take the databases over on promotion.
    needs_take_over: bool,
    /// This node was the primary and has not been demoted since: its WAL may hold frames,
    /// so it cannot apply replicated files until `Db::demote` (or a restart) folds them.
    was_primary: bool,
}

/// `host:port` of a URL like `http://host:port/path` (port 20202 when absent).
pub fn url_host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hostport = rest.split('/').next()?;
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (hostport, 20202),
    };
    Some((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
}

/// The first address `host:port` resolves to.
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr, ReplError> {
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| ReplError::Protocol(format!("{host}:{port} resolves to no address")))
}

impl SupState {
    async fn start_lease(&mut self, myself: &ActorRef<SupMsg>) -> Result<(), ActorProcessingErr> {
        let node = self.args.store.node().clone();
        let me = myself.clone();
        let on_change = Box::new(move |view: LeaseView| {
            // Fencing: read-only now, not when the supervisor gets to the message.
            if !matches!(view, LeaseView::Primary { .. }) {
                node.set_writable(false);
            }
            let _ = me.send_message(SupMsg::Lease(view));
        });
        let fenced = self.args.store.node().clone();
        let on_fence = Box::new(move |until| fenced.set_write_until(until));
        let args = LeaseArgs {
            backend: self.args.backend.clone(),
            candidate: self.args.candidate,
            on_change,
            on_fence,
        };
        let (lease, _) = Actor::spawn_linked(None, LeaseActor, args, myself.get_cell()).await?;
        self.lease = Some(lease);
        Ok(())
    }

    async fn start_listener(&mut self, myself: &ActorRef<SupMsg>, epoch: Epoch) {
        let ep = match &self.server {
            Some(ep) => ep.clone(),
            None => {
                let cfg = match self.args.creds.server_config() {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "TLS server config");
                        return;
                    }
                };
                let made = match self.args.listen_socket.take() {
                    Some(socket) => quinn::default_runtime()
                        .ok_or_else(|| std::io::Error::other("no async runtime"))
                        .and_then(|rt| {
                            quinn::Endpoint::new(Default::default(), Some(cfg), socket, rt)
                        }),
                    None => quinn::Endpoint::server(cfg, self.args.listen),
                };
                match made {
                    Ok(ep) => {
                        tracing::info!(addr = %self.args.listen, "serving replicas over QUIC");
                        self.server = Some(ep.clone());
                        ep
                    }
                    Err(e) => {
                        tracing::error!(addr = %self.args.listen, error = %e,
                            "cannot listen for replicas; retrying");
                        myself.send_after(RESTART_DELAY, || SupMsg::Restart(Child::Listener));
                        return;
                    }
                }
            }
        };
        let cluster_id = self.args.store.cluster_id();
        let id = Identity { epoch, role: Role::Primary, cluster_id, ..self.args.id.clone() };
        let lease = self.lease.clone();
        let session =
            Box::pin(primary::serve(ep, self.args.store.clone(), id, myself.get_cell(), lease));
        let args = LinkArgs { span: tracing::info_span!("listener"), session };
        match spawn_link(args, myself).await {
            Ok(cell) => self.listener = Some(cell),
            Err(e) => tracing::error!(error = %e, "starting the listener"),
        }
    }

    fn stop_server(&mut self) {
        if let Some(l) = self.listener.take() {
            l.stop(Some("no longer primary".into()));
        }
        if let Some(ep) = self.server.take() {
            ep.close(0u32.into(), b"no longer primary");
        }
    }

    async fn start_follower(&mut self, myself: &ActorRef<SupMsg>) {
        if self.follower.is_some() || !matches!(self.view, LeaseView::Replica { holder: Some(_) }) {
            return;
        }
        if self.was_primary {
            // Demoted while running: writes are refused already. Following needs every
            // database in a replica's state (`Db::demote`).
            match self.demote().await {
                Ok(()) => {
                    self.was_primary = false;
                    tracing::info!("demoted: this node was the primary; it follows now");
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot demote this former primary yet; read-only, \
                        retrying (a restart also rejoins it as a replica)");
                    self.retry_follower(myself);
                    return;
                }
            }
        }
        let LeaseView::Replica { holder: Some(holder) } = &self.view else { return };
        let url = self.args.primary_override.clone().unwrap_or(holder.advertise_url.clone());
        let target = url_host_port(&url)
            .ok_or_else(|| ReplError::Protocol(format!("bad primary address {url:?}")))
            .and_then(|(host, port)| {
                Ok(replica::Target { addr: resolve(&host, port)?, server_name: host })
            });
        let target = match target {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the primary; retrying");
                self.retry_follower(myself);
                return;
            }
        };
        let ep = match &self.client {
            Some(ep) if ep.local_addr().is_ok_and(|a| a.is_ipv4() == target.addr.is_ipv4()) => {
                ep.clone()
            }
            _ => {
                let bind: SocketAddr = if target.addr.is_ipv4() {
                    SocketAddr::from(([0, 0, 0, 0], 0))
                } else {
                    SocketAddr::from(([0u16; 8], 0))
                };
                let made =
                    quinn::Endpoint::client(bind).map_err(ReplError::from).and_then(|mut ep| {
                        let cfg = self
                            .args
                            .creds
                            .client_config()
                            .map_err(|e| ReplError::Protocol(e.to_string()))?;
                        ep.set_default_client_config(cfg);
                        Ok(ep)
                    });
                match made {
                    Ok(ep) => {
                        self.client = Some(ep.clone());
                        ep
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "QUIC client endpoint");
                        self.retry_follower(myself);
                        return;
                    }
                }
            }
        };
        let epoch = self.args.store.node().max_epoch();
        // Candidates say so: under synchronous replication only their copies protect a
        // commit from a failover (only they can become primary).
        let role = if self.args.candidate { Role::Candidate } else { Role::Replica };
        let cluster_id = self.args.store.cluster_id();
        let id = Identity { role, epoch, cluster_id, ..self.args.id.clone() };
        let store = self.args.store.clone();
        let span = tracing::info_span!("primary", addr = %target.addr);
        let (lease, promote) = (self.lease.clone(), self.args.promote);
        let session =
            Box::pin(
                async move { replica::session(&ep, &store, &id, &target, lease, promote).await },
            );
        match spawn_link(LinkArgs { span, session }, myself).await {
            #[allow(clippy::disallowed_methods)] // the shell owns the clock
            Ok(cell) => {
                self.follower = Some((cell, Instant::now()));
                self.needs_take_over = true;
            }
            Err(e) => {
                tracing::error!(error = %e, "starting the follower");
                self.retry_follower(myself);
            }
        }
    }

    fn arm_check(&mut self, myself: &ActorRef<SupMsg>) {
        if self.suspicion.is_some() && !self.checking {
            self.checking = true;
            myself.send_after(CHECK_EVERY, || SupMsg::CheckPrimary);
        }
    }

    /// Fast failover: a candidate following a primary it has not heard from for the
    /// failover timeout asks the lease actor to depose it (at most once per timeout).
    fn check_primary(&mut self, myself: &ActorRef<SupMsg>) {
        self.checking = false;
        let LeaseView::Replica { holder: Some(h) } = &self.view else { return };
        let Some(suspicion) = &mut self.suspicion else { return };
        if self.was_primary {
            return; // not following anyone: its silence means nothing
        }
        let node = self.args.store.node();
        let silent_ms = node.primary_silent_ms();
        let (connected, own_fault) = (node.primary().is_some(), node.local_fault());
        if suspicion.check(node.now_ms(), silent_ms, connected, own_fault) {
            tracing::warn!(primary = %h.hostname, silent_ms, "nothing heard from the primary; suspecting it");
            if let Some(l) = &self.lease {
                let _ = l.send_message(LeaseMsg::Depose);
            }
        }
        self.arm_check(myself);
    }

    /// Brings every database from the primary's state to a replica's (`Db::demote`), off
    /// the actor's thread: it waits for readers.
    async fn demote(&mut self) -> Result<(), String> {
        let node = self.args.store.node().clone();
        let dbs = self.args.store.list();
        let r = tokio::task::spawn_blocking(move || {
            dbs.iter().try_for_each(|d| d.demote().map_err(|e| format!("{}: {e}", d.name())))
        })
        .await
        .map_err(|e| format!("demotion task: {e}"))?;
        if r.is_ok() {
            // Writes stay refused (not writable); the pause of a handoff is over.
            node.pause_writes(false);
        }
        r
    }

    fn retry_follower(&mut self, myself: &ActorRef<SupMsg>) {
        myself.send_after(self.backoff, || SupMsg::Restart(Child::Follower));
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Stops the follower and waits until its session ended (no apply in flight after).
    async fn stop_follower(&mut self) {
        if let Some((f, _)) = self.follower.take() {
            let r = f.stop_and_wait(Some("lease changed".into()), Some(RESTART_DELAY * 5)).await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "follower did not stop in time");
            }
        }
        self.args.store.node().set_primary(None);
    }

    async fn apply_view(&mut self, myself: &ActorRef<SupMsg>, view: LeaseView) {
        self.view = view.clone();
        match view {
            LeaseView::Primary { epoch } => {
                self.args.store.node().note_epoch(epoch);
                self.stop_follower().await;
                if self.needs_take_over {
                    // Promotion: the FUSE side takes over from the replica applier.
                    for db in self.args.store.list() {
                        if let Err(e) = db.take_over().await {
                            tracing::error!(db = db.name(), error = %e,
                                "cannot take the database over; staying read-only");
                            myself.send_after(RESTART_DELAY, move || {
                                SupMsg::Lease(LeaseView::Primary { epoch })
                            });
                            return;
                        }
                    }
                }
                self.needs_take_over = false;
                self.was_primary = true;
                // A handoff of an earlier term left writes paused. Writable before the
                // listener starts: a replica's HELLO is answered NOT_PRIMARY by a node that
                // is not (`protocol.md` §2 rule 9).
                self.args.store.node().pause_writes(false);
                self.args.store.node().set_writable(true);
                if self.listener.is_none() {
                    self.start_listener(myself, epoch).await;
                }
                tracing::info!(%epoch, "this node is the primary");
            }
            LeaseView::Replica { holder } => {
                self.args.store.node().set_writable(false);
                self.stop_server();
                self.stop_follower().await;
                self.backoff = BACKOFF_MIN;
                match holder {
                    Some(h) => {
                        tracing::info!(primary = %h.hostname, url = %h.advertise_url,
                            "following");
                        // A new term: its primary's silence counts from now.
                        self.args.store.node().heard_primary();
                        if let Some(s) = &mut self.suspicion {
                            s.new_term();
                        }
                        self.start_follower(myself).await;
                        self.arm_check(myself);
                    }
                    None => tracing::warn!("no primary known; read-only"),
                }
            }
        }
    }

    async fn child_ended(&mut self, myself: &ActorRef<SupMsg>, id: ActorId, why: Option<String>) {
        let reason = why.unwrap_or_else(|| "stopped".into());
        if self.lease.as_ref().is_some_and(|c| c.get_id() == id) {
            self.lease = None;
            tracing::error!(%reason, "lease actor ended; read-only until it restarts");
            self.apply_view(myself, LeaseView::Replica { holder: None }).await;
            myself.send_after(RESTART_DELAY, || SupMsg::Restart(Child::Lease));
        } else if self.listener.as_ref().is_some_and(|c| c.get_id() == id) {
            self.listener = None;
            tracing::warn!(%reason, "listener ended");
            if matches!(self.view, LeaseView::Primary { .. }) {
                myself.send_after(RESTART_DELAY, || SupMsg::Restart(Child::Listener));
            }
        } else if self.follower.as_ref().is_some_and(|(c, _)| c.get_id() == id) {
            let (_, started) = self.follower.take().expect("matched above");
            self.args.store.node().set_primary(None);
            tracing::warn!(%reason, "replication session ended; reconnecting");
            if started.elapsed() > LONG_SESSION {
                self.backoff = BACKOFF_MIN;
            }
            self.retry_follower(myself);
        } else if self.links.remove(&id) {
            tracing::info!(%reason, "replica link ended");
        }
    }
}

async fn spawn_link(
    args: LinkArgs,
    sup: &ActorRef<SupMsg>,
) -> Result<ActorCell, ActorProcessingErr> {
    let (link, _) = Actor::spawn_linked(None, LinkActor, args, sup.get_cell()).await?;
    Ok(link.get_cell())
}

impl Actor for ReplSupervisor {
    type Msg = SupMsg;
    type State = SupState;
    type Arguments = SupArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SupMsg>,
        args: SupArgs,
    ) -> Result<SupState, ActorProcessingErr> {
        let suspicion = args.failover_after.map(|d| Suspicion::new(d.as_millis() as u64));
        let mut st = SupState {
            args,
            view: LeaseView::Replica { holder: None },
            lease: None,
            checking: false,
            suspicion,
            server: None,
            listener: None,
            client: None,
            follower: None,
            links: HashSet::new(),
            backoff: BACKOFF_MIN,
            needs_take_over: false,
            was_primary: false,
        };
        st.args.store.node().set_writable(false);
        st.start_lease(&myself).await?;
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<SupMsg>,
        msg: SupMsg,
        st: &mut SupState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupMsg::Lease(view) => st.apply_view(&myself, view).await,
            SupMsg::Restart(Child::Lease) if st.lease.is_none() => st.start_lease(&myself).await?,
            SupMsg::Restart(Child::Listener) if st.listener.is_none() => {
                if let LeaseView::Primary { epoch } = st.view {
                    st.start_listener(&myself, epoch).await;
                }
            }
            SupMsg::Restart(Child::Follower) => st.start_follower(&myself).await,
            SupMsg::Restart(_) => {}
            SupMsg::CheckPrimary => st.check_primary(&myself),
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupMsg>,
        evt: SupervisionEvent,
        st: &mut SupState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorStarted(cell) => {
                let known = [st.lease.as_ref().map(|l| l.get_cell()), st.listener.clone()]
                    .into_iter()
                    .flatten()
                    .chain(st.follower.as_ref().map(|(c, _)| c.clone()))
                    .any(|c| c.get_id() == cell.get_id());
                if !known {
                    st.links.insert(cell.get_id());
                }
            }
            SupervisionEvent::ActorFailed(cell, e) => {
                st.child_ended(&myself, cell.get_id(), Some(e.to_string())).await
            }
            SupervisionEvent::ActorTerminated(cell, _, why) => {
                st.child_ended(&myself, cell.get_id(), why).await
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SupMsg>,
        st: &mut SupState,
    ) -> Result<(), ActorProcessingErr> {
        st.args.store.node().set_writable(false);
        if let Some(l) = st.lease.take() {
            // Releases the lease (the lease actor's post_stop).
            let _ = l.stop_and_wait(Some("shutting down".into()), Some(RESTART_DELAY)).await;
        }
        st.stop_follower().await;
        st.stop_server();
        if let Some(ep) = st.client.take() {
            ep.close(0u32.into(), b"shutting down");
        }
        Ok(())
    }
}
