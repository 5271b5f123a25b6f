//! The node's replication supervisor: parent of the lease actor and of every peer-link
//! actor, and the shell of the node's role machine ([`RoleMachine`]), which decides what a
//! lease change means; this runs what it decides.
//!
//! - Lease says primary: the mount becomes writable, the QUIC server starts, and each
//!   accepted replica gets a peer-link actor.
//! - Lease says replica: the mount is made read-only *synchronously, inside the lease
//!   actor's callback* (before anyone else could be elected), the server stops, and a
//!   peer-link actor follows the holder.
//!
//! Restarts (timed by the role machine): a failed follower link is restarted with backoff
//! (100 ms doubling to 3 s, reset after a session that lasted 5 s); a failed lease actor is
//! restarted after 1 s with the node read-only meanwhile; a failed listener is restarted
//! after 1 s. A replica's link on the primary is not restarted: the replica redials.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::link::{LinkActor, LinkArgs};
use super::{Identity, ReplError, primary, replica};
use crate::core::lease::{Holder, LeaseView};
use crate::core::session::role::{RESTART_DELAY_MS, RoleAction, RoleMachine};
use crate::core::types::{Epoch, Millis};
use crate::core::wire::Role;
use crate::lease::LeaseBackend;
use crate::lease::actor::{LeaseActor, LeaseArgs, LeaseMsg};
use crate::store::Store;
use crate::tls::Credentials;

/// Why promotion (take-over) or demotion failed; the role machine retries.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("{db}: {source}")]
    Db { db: String, source: crate::db::DbError },
    #[error("demotion task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

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

pub enum SupMsg {
    Lease(LeaseView),
    /// The role machine's timer.
    Timer,
}

pub struct ReplSupervisor;

pub struct SupState {
    args: SupArgs,
    role: RoleMachine,
    /// When a [`SupMsg::Timer`] is due (one pending at a time).
    timer_at: Option<Millis>,
    lease: Option<ActorRef<LeaseMsg>>,
    server: Option<quinn::Endpoint>,
    listener: Option<ActorCell>,
    client: Option<quinn::Endpoint>,
    follower: Option<ActorCell>,
    links: HashSet<ActorId>,
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
        .ok_or_else(|| ReplError::Address(format!("{host}:{port} resolves to no address")))
}

impl SupState {
    fn now(&self) -> Millis {
        Millis(self.args.store.node().now_ms())
    }

    /// Runs everything the role machine decided, feeding outcomes back, then arms its timer.
    async fn run(&mut self, myself: &ActorRef<SupMsg>) {
        while let Some(a) = self.role.poll_action() {
            let node = self.args.store.node().clone();
            match a {
                RoleAction::Writable(on) => {
                    node.set_writable(on);
                    if let (true, LeaseView::Primary { epoch }) = (on, self.role.view()) {
                        tracing::info!(%epoch, "this node is the primary");
                        node.metrics().elected();
                    }
                }
                RoleAction::ResumeWrites => node.pause_writes(false),
                RoleAction::NoteEpoch(e) => {
                    node.note_epoch(e);
                }
                RoleAction::TakeOver => {
                    // Promotion: the FUSE side takes over from the replica applier.
                    let r = self.take_over().await;
                    if let Err(e) = &r {
                        tracing::error!(error = %e, "cannot take the databases over; staying \
                            read-only, retrying");
                    }
                    let now = self.now();
                    self.role.handle_taken_over(now, r.map_err(|e| e.to_string()));
                }
                RoleAction::Demote => {
                    let r = self.demote().await;
                    match &r {
                        Ok(()) => {
                            tracing::info!("demoted: this node was the primary; it follows now");
                            node.metrics().demoted();
                        }
                        Err(e) => tracing::error!(error = %e, "cannot demote this former primary \
                            yet; read-only, retrying (a restart also rejoins it as a replica)"),
                    }
                    let now = self.now();
                    self.role.handle_demoted(now, r.map_err(|e| e.to_string()));
                }
                RoleAction::StartListener(epoch) => {
                    if !self.start_listener(myself, epoch).await {
                        let now = self.now();
                        self.role.handle_listener_ended(now);
                    }
                }
                RoleAction::StopListener => self.stop_server(),
                RoleAction::StartFollower(holder) => {
                    let started = self.start_follower(myself, &holder).await;
                    let now = self.now();
                    if started {
                        self.role.handle_follower_started(now);
                    } else {
                        self.role.handle_follower_ended(now);
                    }
                }
                RoleAction::StopFollower => self.stop_follower().await,
                RoleAction::HeardPrimary => {
                    if let LeaseView::Replica { holder: Some(h) } = self.role.view() {
                        tracing::info!(primary = %h.hostname, url = %h.advertise_url, "following");
                    }
                    node.heard_primary();
                }
                RoleAction::Depose(h) => {
                    tracing::warn!(primary = %h.hostname, silent_ms = node.primary_silent_ms(),
                        "nothing heard from the primary; suspecting it");
                    node.metrics().suspected_primary();
                    if let Some(l) = &self.lease {
                        let _ = l.send_message(LeaseMsg::Depose);
                    }
                }
                RoleAction::RestartLease => {
                    if self.lease.is_none()
                        && let Err(e) = self.start_lease(myself).await
                    {
                        tracing::error!(error = %e, "cannot start the lease actor; retrying");
                        let now = self.now();
                        self.role.handle_lease_ended(now);
                    }
                }
            }
        }
        self.publish_lease();
        if let Some(at) = self.role.poll_timeout()
            && self.timer_at.is_none_or(|t| at < t)
        {
            self.timer_at = Some(at);
            let delay = Duration::from_millis(at.since(self.now()));
            myself.send_after(delay, || SupMsg::Timer);
        }
    }

    /// Shows the role as it now is (`/info`, `/events`): primary once the mount is
    /// writable, else the holder the lease names.
    fn publish_lease(&self) {
        let node = self.args.store.node();
        let (epoch, primary) = match self.role.view() {
            LeaseView::Primary { epoch } => (*epoch, None),
            LeaseView::Replica { holder } => (node.max_epoch(), holder.clone()),
        };
        let is_primary = node.is_primary() && primary.is_none();
        node.hub().set_lease(crate::observe::LeaseState { is_primary, epoch, primary });
    }

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

    /// Starts serving replicas; false if it could not (the role machine retries).
    async fn start_listener(&mut self, myself: &ActorRef<SupMsg>, epoch: Epoch) -> bool {
        let ep = match &self.server {
            Some(ep) => ep.clone(),
            None => {
                let cfg = match self.args.creds.server_config() {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "TLS server config");
                        return false;
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
                        return false;
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
            Ok(cell) => {
                self.listener = Some(cell);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "starting the listener");
                false
            }
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

    /// Starts following `holder`; false if it could not (the role machine retries).
    async fn start_follower(&mut self, myself: &ActorRef<SupMsg>, holder: &Holder) -> bool {
        let url = self.args.primary_override.clone().unwrap_or(holder.advertise_url.clone());
        let target = url_host_port(&url)
            .ok_or_else(|| ReplError::Address(format!("{url:?} is not host:port")))
            .and_then(|(host, port)| {
                Ok(replica::Target { addr: resolve(&host, port)?, server_name: host })
            });
        let target = match target {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the primary; retrying");
                return false;
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
                            .map_err(|e| ReplError::Tls(e.to_string()))?;
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
                        return false;
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
            Ok(cell) => {
                self.follower = Some(cell);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "starting the follower");
                false
            }
        }
    }

    /// Every database taken over from the replica applier, off the actor's thread.
    async fn take_over(&self) -> Result<(), RoleError> {
        for db in self.args.store.list() {
            db.take_over()
                .await
                .map_err(|source| RoleError::Db { db: db.name().to_owned(), source })?;
        }
        Ok(())
    }

    /// Brings every database from the primary's state to a replica's (`Db::demote`), off
    /// the actor's thread: it waits for readers.
    async fn demote(&mut self) -> Result<(), RoleError> {
        let dbs = self.args.store.list();
        tokio::task::spawn_blocking(move || {
            dbs.iter().try_for_each(|d| {
                d.demote().map_err(|source| RoleError::Db { db: d.name().to_owned(), source })
            })
        })
        .await?
    }

    /// Stops the follower and waits until its session ended (no apply in flight after).
    async fn stop_follower(&mut self) {
        if let Some(f) = self.follower.take() {
            let wait = Some(Duration::from_millis(5 * RESTART_DELAY_MS));
            let r = f.stop_and_wait(Some("lease changed".into()), wait).await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "follower did not stop in time");
            }
        }
        self.args.store.node().set_primary(None);
    }

    async fn child_ended(&mut self, myself: &ActorRef<SupMsg>, id: ActorId, why: Option<String>) {
        let reason = why.unwrap_or_else(|| "stopped".into());
        let now = self.now();
        if self.lease.as_ref().is_some_and(|c| c.get_id() == id) {
            self.lease = None;
            tracing::error!(%reason, "lease actor ended; read-only until it restarts");
            self.role.handle_lease_ended(now);
        } else if self.listener.as_ref().is_some_and(|c| c.get_id() == id) {
            self.listener = None;
            tracing::warn!(%reason, "listener ended");
            self.role.handle_listener_ended(now);
        } else if self.follower.as_ref().is_some_and(|c| c.get_id() == id) {
            self.follower = None;
            self.args.store.node().set_primary(None);
            tracing::warn!(%reason, "replication session ended; reconnecting");
            self.role.handle_follower_ended(now);
        } else if self.links.remove(&id) {
            tracing::info!(%reason, "replica link ended");
        }
        self.run(myself).await;
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
        let failover = args.failover_after.map(|d| d.as_millis() as u64);
        let mut st = SupState {
            args,
            role: RoleMachine::new(failover),
            timer_at: None,
            lease: None,
            server: None,
            listener: None,
            client: None,
            follower: None,
            links: HashSet::new(),
        };
        st.run(&myself).await;
        st.start_lease(&myself).await?;
        Ok(st)
    }

    async fn handle(
        &self,
        myself: ActorRef<SupMsg>,
        msg: SupMsg,
        st: &mut SupState,
    ) -> Result<(), ActorProcessingErr> {
        let now = st.now();
        match msg {
            SupMsg::Lease(view) => {
                if view == (LeaseView::Replica { holder: None }) {
                    tracing::warn!("no primary known; read-only");
                }
                st.role.handle_view(now, view)
            }
            SupMsg::Timer => {
                st.timer_at = None;
                let node = st.args.store.node();
                let (silent, connected, fault) =
                    (node.primary_silent_ms(), node.primary().is_some(), node.local_fault());
                st.role.handle_timeout(now, silent, connected, fault);
            }
        }
        st.run(&myself).await;
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
                    .chain(st.follower.clone())
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
            let wait = Some(Duration::from_millis(RESTART_DELAY_MS));
            let _ = l.stop_and_wait(Some("shutting down".into()), wait).await;
        }
        st.stop_follower().await;
        st.stop_server();
        if let Some(ep) = st.client.take() {
            ep.close(0u32.into(), b"shutting down");
        }
        Ok(())
    }
}
