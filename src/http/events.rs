//! `GET /events`: LiteFS's newline-delimited JSON event stream. First an `init` event
//! (`{"type":"init","data":{"isPrimary","hostname"}}`, the hostname being the primary's),
//! then one `tx` event per transaction committed or applied on this node
//! (`{"type":"tx","db","data":{"txID","postApplyChecksum","pageSize","commit","timestamp"}}`)
//! and a `primaryChange` event whenever the primary changes.
//!
//! Each event is written as soon as it is published (with whatever else is queued for the
//! reader, in one write). A follower of a busy node costs it about two wake-ups and two
//! system calls per transaction; `?coalesce=1ms` trades up to that much latency (plus the
//! timer's millisecond granularity) for at most one write per interval.
//!
//! A reader never slows commits: events come from the node's bounded ring
//! ([`crate::observe::EVENT_CAPACITY`] events, shared by all readers), and a reader that
//! falls that far behind gets a last `{"type":"error",...}` line saying how many events it
//! missed, and the stream ends (reconnect and start from `init` again). What a stalled
//! reader holds is bounded: its place in the ring, hyper's write buffer
//! ([`super::MAX_BUF`]) and the connection's kernel send buffer, capped here at
//! [`SEND_BUFFER`].

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::Api;
use crate::core::rfc3339;
use crate::observe::Event;

/// The kernel's share of a stalled reader's backlog (hyper holds at most
/// [`super::MAX_BUF`] more).
const SEND_BUFFER: usize = 64 * 1024;

#[derive(Debug, serde::Deserialize)]
pub struct EventsQuery {
    /// `?coalesce=<Go duration>`: under load, at most one write per this interval.
    coalesce: Option<String>,
}

pub async fn events(
    State(api): State<Arc<Api>>,
    axum::extract::Query(q): axum::extract::Query<EventsQuery>,
    fd: Option<axum::Extension<super::ConnFd>>,
) -> Response {
    let coalesce = match q.coalesce.as_deref().map(crate::config::parse_duration) {
        None => std::time::Duration::ZERO,
        Some(Ok(d)) if d <= MAX_COALESCE => d,
        Some(Ok(_)) => {
            return super::text(
                axum::http::StatusCode::BAD_REQUEST,
                format!("coalesce: at most {} ms", MAX_COALESCE.as_millis()),
            );
        }
        Some(Err(e)) => {
            return super::text(axum::http::StatusCode::BAD_REQUEST, format!("coalesce: {e}"));
        }
    };
    if let Some(axum::Extension(fd)) = fd {
        fd.cap_send_buffer(SEND_BUFFER);
    }
    let hub = api.store.node().hub().clone();
    // Subscribed before `init` is built: nothing between the two is missed.
    let rx = hub.subscribe();
    let (is_primary, hostname) = api.primary_view();
    let init =
        line(&json!({"type": "init", "data": {"isPrimary": is_primary, "hostname": hostname}}));
    let stream = futures_util::stream::unfold(Some((rx, Some(init), None)), move |st| async move {
        let (mut rx, first, last) = st?;
        if let Some(first) = first {
            return Some((Ok::<_, std::convert::Infallible>(first), Some((rx, None, last))));
        }
        match rx.recv().await {
            Ok(ev) => {
                // With `coalesce`, under load (the last chunk went out less than that ago),
                // wait for the rest of the interval first: at most one write per interval.
                let last: Option<tokio::time::Instant> = last;
                if let Some(at) = last.filter(|_| !coalesce.is_zero()).map(|l| l + coalesce)
                    && at > tokio::time::Instant::now()
                {
                    tokio::time::sleep_until(at).await;
                }
                // Whatever else is already queued goes out in the same chunk: one write
                // per wake-up instead of one per transaction, so a follower costs the
                // node little even at thousands of commits a second.
                let mut buf = Vec::with_capacity(256);
                push_line(&mut buf, &ev);
                while buf.len() < BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(ev) => push_line(&mut buf, &ev),
                        // Lagged is reported by the next `recv`.
                        Err(_) => break,
                    }
                }
                Some((Ok(Bytes::from(buf)), Some((rx, None, Some(tokio::time::Instant::now())))))
            }
            Err(RecvError::Lagged(n)) => {
                let msg = format!(
                    "this reader fell {n} events behind and was dropped (the node keeps at \
                     most {} per reader); reconnect",
                    crate::observe::EVENT_CAPACITY
                );
                Some((Ok(line(&json!({"type": "error", "data": {"error": msg}}))), None))
            }
            Err(RecvError::Closed) => None,
        }
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| super::text(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e))
}

/// The longest `coalesce` a reader may ask for.
const MAX_COALESCE: std::time::Duration = std::time::Duration::from_secs(1);

/// Bytes of events gathered into one chunk, at most (about).
const BATCH_BYTES: usize = 32 * 1024;

fn push_line(buf: &mut Vec<u8>, ev: &Event) {
    use std::io::Write;
    match ev {
        // The common case, written directly (the same JSON as `encode`, which the tests
        // compare it with): no intermediate `Value` per transaction.
        Event::Tx(t) => {
            let _ = buf.write_all(b"{\"type\":\"tx\",\"db\":");
            // invariant: serializing a string to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *buf, &*t.db);
            let _ =
                write!(buf, ",\"data\":{{\"txID\":\"{:016x}\",\"postApplyChecksum\":", t.txid.0);
            let _ = match t.post_apply_checksum {
                Some(c) => write!(buf, "\"{c:016x}\""),
                None => buf.write_all(b"null"),
            };
            let _ = writeln!(
                buf,
                ",\"pageSize\":{},\"commit\":{},\"timestamp\":\"{}\"}}}}",
                t.page_size,
                t.commit,
                rfc3339::format_ms(t.timestamp_ms)
            );
        }
        other => {
            let _ = serde_json::to_writer(&mut *buf, &encode(other));
            buf.push(b'\n');
        }
    }
}

fn line(v: &serde_json::Value) -> Bytes {
    let mut b = v.to_string().into_bytes();
    b.push(b'\n');
    Bytes::from(b)
}

/// The JSON of one event, in LiteFS's shape.
pub fn encode(ev: &Event) -> serde_json::Value {
    match ev {
        Event::Tx(t) => json!({
            "type": "tx",
            "db": &*t.db,
            "data": {
                "txID": format!("{:016x}", t.txid.0),
                "postApplyChecksum": t.post_apply_checksum.map(|c| format!("{c:016x}")),
                "pageSize": t.page_size,
                "commit": t.commit,
                "timestamp": rfc3339::format_ms(t.timestamp_ms),
            }
        }),
        Event::PrimaryChange { is_primary, hostname } => json!({
            "type": "primaryChange",
            "data": {"isPrimary": is_primary, "hostname": hostname}
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::Txid;
    use crate::observe::TxEvent;

    #[test]
    fn tx_lines_are_the_json_of_encode() {
        for (db, sum) in [("a.db", Some(0xabcdef)), ("we\"ird\\name.db", None)] {
            let ev = Event::Tx(TxEvent {
                db: db.into(),
                txid: Txid(0x1234),
                post_apply_checksum: sum,
                page_size: 4096,
                commit: 7,
                timestamp_ms: 1_700_000_000_123,
            });
            let mut buf = Vec::new();
            push_line(&mut buf, &ev);
            assert_eq!(buf.last(), Some(&b'\n'));
            let got: serde_json::Value = serde_json::from_slice(&buf).unwrap();
            assert_eq!(got, encode(&ev));
        }
    }
}
