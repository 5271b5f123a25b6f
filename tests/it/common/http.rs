//! A blocking HTTP client for the tests (reqwest on a private current-thread runtime): real
//! requests over TCP to a node's API, with the status, headers and body kept whole, and a
//! reader for streamed responses (`/events`).

use std::time::Duration;

pub use reqwest::Method;

/// A whole response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap()
}

/// Sends one request; `Err` only when no response came (connection refused, time-out).
pub fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Resp, String> {
    rt().block_on(async {
        let mut rb = client().request(method, url).body(body);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.map_err(|e| format!("{url}: body: {e}"))?.to_vec();
        Ok(Resp { status, headers, body })
    })
}

pub fn get(url: &str) -> Resp {
    request(Method::GET, url, &[], Vec::new()).unwrap()
}

pub fn post(url: &str, body: Vec<u8>) -> Resp {
    request(Method::POST, url, &[], body).unwrap()
}

/// Reads the streamed response of `url` line by line on a thread of its own, handing
/// each line to the returned channel until the stream ends (the channel then closes).
pub fn stream_lines(url: &str) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let url = url.to_owned();
    std::thread::spawn(move || {
        rt().block_on(async move {
            let c = reqwest::Client::new();
            let Ok(mut r) = c.get(&url).send().await else { return };
            let mut buf = Vec::new();
            while let Ok(Some(chunk)) = r.chunk().await {
                buf.extend_from_slice(&chunk);
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    if tx.send(String::from_utf8_lossy(&line[..i]).into_owned()).is_err() {
                        return;
                    }
                }
            }
        })
    });
    rx
}
