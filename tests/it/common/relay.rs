//! A UDP relay that delays every datagram by a fixed time and drops a fraction of them, in
//! both directions: the link impairment `tc netem delay 25ms loss 1%` would give. This
//! machine's kernel has no `sch_netem` (tc answers "Specified qdisc kind is unknown"), so
//! tests put the relay on the path between network namespaces instead. QUIC runs over UDP,
//! so a datagram relay is a faithful link: QUIC's own loss recovery and RTT estimation see
//! the delay and the losses.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

enum Dest {
    /// Client → upstream, through the client's own upstream socket.
    Up(Arc<UdpSocket>),
    /// Upstream → client, from the listening socket.
    Down(SocketAddr),
}

pub struct Relay {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub dropped: Arc<AtomicU64>,
    pub relayed: Arc<AtomicU64>,
}

struct Lossy {
    state: u64,
    loss_per_million: u64,
}

impl Lossy {
    fn drop_it(&mut self) -> bool {
        // xorshift64: deterministic per relay, no dependency.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % 1_000_000 < self.loss_per_million
    }
}

impl Relay {
    /// Relays datagrams arriving at `listen` to `upstream` and the answers back.
    #[allow(clippy::disallowed_methods)]
    pub fn start(listen: SocketAddr, upstream: SocketAddr, delay: Duration, loss: f64) -> Relay {
        let sock = Arc::new(UdpSocket::bind(listen).expect("relay bind"));
        sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let relayed = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel::<(Instant, Dest, Vec<u8>)>();
        let lossy = Arc::new(Mutex::new(Lossy {
            state: 0x9E37_79B9_7F4A_7C15 ^ u64::from(listen.port()),
            loss_per_million: (loss * 1_000_000.0) as u64,
        }));
        let mut threads = Vec::new();
        // The delay line: every datagram waits the same time, so FIFO order is due order.
        {
            let sock = sock.clone();
            let relayed = relayed.clone();
            threads.push(std::thread::spawn(move || {
                while let Ok((due, dest, buf)) = rx.recv() {
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let _ = match dest {
                        Dest::Up(s) => s.send(&buf),
                        Dest::Down(addr) => sock.send_to(&buf, addr),
                    };
                    relayed.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        {
            let (sock, stop, dropped) = (sock.clone(), stop.clone(), dropped.clone());
            let mut inner = Vec::new();
            threads.push(std::thread::spawn(move || {
                let mut clients: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
                    let up = clients.entry(from).or_insert_with(|| {
                        let bind: SocketAddr = if upstream.is_ipv4() {
                            "0.0.0.0:0".parse().unwrap()
                        } else {
                            "[::]:0".parse().unwrap()
                        };
                        let up = Arc::new(UdpSocket::bind(bind).unwrap());
                        up.connect(upstream).unwrap();
                        up.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                        let (up2, tx, stop, lossy, dropped) =
                            (up.clone(), tx.clone(), stop.clone(), lossy.clone(), dropped.clone());
                        inner.push(std::thread::spawn(move || {
                            let mut b = vec![0u8; 65536];
                            while !stop.load(Ordering::Relaxed) {
                                let Ok(n) = up2.recv(&mut b) else { continue };
                                if lossy.lock().unwrap().drop_it() {
                                    dropped.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                }
                                let _ = tx.send((
                                    Instant::now() + delay,
                                    Dest::Down(from),
                                    b[..n].to_vec(),
                                ));
                            }
                        }));
                        up
                    });
                    if lossy.lock().unwrap().drop_it() {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let _ =
                        tx.send((Instant::now() + delay, Dest::Up(up.clone()), buf[..n].to_vec()));
                }
                drop(tx);
                for t in inner {
                    let _ = t.join();
                }
            }));
        }
        Relay { stop, threads, dropped, relayed }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
