//! The proxy's client for the local app (`proxy.target`): HTTP/1.1 over TCP, with a small
//! pool of kept-alive connections and LiteFS's patience with an app that is still starting
//! (a refused dial is retried every 100 ms for up to 30 s).

use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Between dials the app refused.
const DIAL_RETRY: Duration = Duration::from_millis(100);
/// How long a refused dial is retried (the app may still be starting).
const DIAL_PATIENCE: Duration = Duration::from_secs(30);
/// Idle connections kept for reuse.
const MAX_IDLE: usize = 64;

/// Why the app could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("connecting to the app at {target}: {source}")]
    Dial { target: String, source: std::io::Error },
    #[error("the app at {target}: {source}")]
    Http { target: String, source: hyper::Error },
}

/// See the module docs.
pub struct AppClient {
    target: String,
    idle: Mutex<Vec<SendRequest<Body>>>,
}

impl AppClient {
    pub fn new(target: &str) -> AppClient {
        AppClient { target: target.to_owned(), idle: Mutex::new(Vec::new()) }
    }

    /// Sends `req` and returns the app's response head (its body streams). `upgrade`: the
    /// request asks for a protocol upgrade, so its connection is its own and never pooled.
    pub async fn send(
        &self,
        req: Request<Body>,
        upgrade: bool,
    ) -> Result<Response<Incoming>, AppError> {
        let mut req = req;
        if !upgrade {
            // A kept-alive connection the app closed meanwhile hands the request back
            // unsent; only then is it sent again, on a new connection.
            while let Some(mut sender) = self.take_idle() {
                match sender.try_send_request(req).await {
                    Ok(resp) => {
                        self.put_idle(sender);
                        return Ok(resp);
                    }
                    Err(mut e) => match e.take_message() {
                        Some(back) => req = back,
                        None => return Err(self.http(e.into_error())),
                    },
                }
            }
        }
        let mut sender = self.dial(upgrade).await?;
        let resp = sender.send_request(req).await.map_err(|e| self.http(e))?;
        if !upgrade {
            self.put_idle(sender);
        }
        Ok(resp)
    }

    fn http(&self, source: hyper::Error) -> AppError {
        AppError::Http { target: self.target.clone(), source }
    }

    /// A pooled connection ready for a request (one still streaming an earlier response
    /// stays pooled; closed ones are dropped).
    fn take_idle(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|s| !s.is_closed());
        let i = idle.iter().position(|s| s.is_ready())?;
        Some(idle.swap_remove(i))
    }

    fn put_idle(&self, s: SendRequest<Body>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(s);
        }
    }

    async fn dial(&self, upgrade: bool) -> Result<SendRequest<Body>, AppError> {
        let give_up = tokio::time::Instant::now() + DIAL_PATIENCE;
        let stream = loop {
            match tokio::net::TcpStream::connect(&self.target).await {
                Ok(s) => break s,
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionRefused
                        && tokio::time::Instant::now() + DIAL_RETRY < give_up =>
                {
                    tokio::time::sleep(DIAL_RETRY).await;
                }
                Err(source) => return Err(AppError::Dial { target: self.target.clone(), source }),
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.http(e))?;
        let target = self.target.clone();
        tokio::spawn(async move {
            let r = if upgrade { conn.with_upgrades().await } else { conn.await };
            if let Err(e) = r {
                tracing::debug!(%target, error = %e, "app connection ended");
            }
        });
        Ok(sender)
    }
}
