//! The peer-link actor: one per replication session (a replica on the primary, the primary
//! on a replica). It owns the session's task; the task's end is the actor's end, so its
//! supervisor sees a failed session as a failed actor and decides what to restart.

use std::future::Future;
use std::pin::Pin;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::ReplError;

pub type Session = Pin<Box<dyn Future<Output = Result<(), ReplError>> + Send>>;

pub struct LinkArgs {
    pub span: tracing::Span,
    pub session: Session,
}

pub enum LinkMsg {
    /// The session ended (`Err` with the reason).
    Ended(Result<(), String>),
}

pub struct LinkActor;

pub struct LinkState {
    task: JoinHandle<()>,
}

impl Actor for LinkActor {
    type Msg = LinkMsg;
    type State = LinkState;
    type Arguments = LinkArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<LinkMsg>,
        args: LinkArgs,
    ) -> Result<LinkState, ActorProcessingErr> {
        let session = args.session;
        let task = tokio::spawn(
            async move {
                let r = match session.await {
                    Ok(()) | Err(ReplError::Closed) => Ok(()),
                    Err(e) => Err(e.to_string()),
                };
                let _ = myself.send_message(LinkMsg::Ended(r));
            }
            .instrument(args.span),
        );
        Ok(LinkState { task })
    }

    async fn handle(
        &self,
        myself: ActorRef<LinkMsg>,
        msg: LinkMsg,
        _st: &mut LinkState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LinkMsg::Ended(Ok(())) => {
                myself.stop(Some("session closed".into()));
                Ok(())
            }
            LinkMsg::Ended(Err(e)) => Err(e.into()),
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<LinkMsg>,
        st: &mut LinkState,
    ) -> Result<(), ActorProcessingErr> {
        // Stopping the actor ends its session (the QUIC streams close with it).
        st.task.abort();
        Ok(())
    }
}
