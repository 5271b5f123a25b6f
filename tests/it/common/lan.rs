//! A LAN of network namespaces for partition tests: one Linux bridge on the host (address
//! `10.<net>.200.1`, where a Consul agent can listen) and node `i` in namespace
//! `<tag><i>` with `10.<net>.200.<i+2>` on a veth whose host end is a bridge port. The tag
//! and `net` come from [`claim`]: namespaces, interfaces and addresses belong to the
//! machine, not to the test process, so each LAN takes names and a subnet nobody holds.
//!
//! Partitions drop packets *silently*, as a broken switch or a cut cable would (the kernel
//! here has neither netem nor netfilter, so this is done with neighbour entries): each side
//! of a cut gets a permanent neighbour entry mapping the other's address to a MAC address
//! nobody has. Frames still leave, the bridge floods them, and every receiver drops them as
//! not addressed to it; senders see no error and time out, exactly like a real partition.
//! Healing deletes the entries; ARP finds the real addresses again.
//!
//! Hazard: a Docker engine on the host sets the iptables FORWARD policy to DROP and loads
//! `br_netfilter`, which sends frames crossing a bridge through that chain: node-to-node
//! traffic would vanish (node-to-host traffic takes INPUT and still works, so only the
//! nodes' QUIC links break). The bridge's own traffic is accepted explicitly, first in the
//! chain, for as long as the LAN exists.

use std::process::Command;
use std::sync::Mutex;

/// A MAC address that no interface has (locally administered).
const NOWHERE: &str = "02:00:00:00:de:ad";

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2) is installed");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A name tag and an address block `10.<net>.0.0/16` for one test's namespaces and
/// interfaces. Tests build namespaces two at a time in one process, and another test run on
/// the machine may hold some too: `net` is one that no host address is in yet and that this
/// process never handed out before, and the tag (`<prefix><net>x<pid % 1000>`, at most
/// 11 bytes with a 2-byte prefix, so `<tag>br` and `<tag>h<i>` fit the 15 bytes of an
/// interface name) carries it.
pub fn claim(prefix: &str) -> (String, u8) {
    static CLAIMED: Mutex<Vec<u8>> = Mutex::new(Vec::new());
    let mut claimed = CLAIMED.lock().unwrap();
    let out =
        Command::new("ip").args(["-o", "-4", "addr", "show"]).output().expect("ip (iproute2)");
    let used = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = std::process::id() % 240;
    for k in 0..240 {
        // invariant: 10 + (… % 240) < 256.
        let net = (10 + (start + k) % 240) as u8;
        if claimed.contains(&net) || used.contains(&format!(" 10.{net}.")) {
            continue;
        }
        claimed.push(net);
        return (format!("{prefix}{net}x{}", std::process::id() % 1000), net);
    }
    panic!("no free 10.<net>.0.0/16 block for network namespaces: {used}")
}

/// One end of a link to cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The host (where Consul runs).
    Host,
    Node(usize),
}

/// Namespaces, veths and the bridge; all removed on drop.
pub struct Lan {
    pub names: Vec<String>,
    bridge: String,
    tag: String,
    net: u8,
}

impl Lan {
    /// `n` nodes, with names starting with `prefix` (2 characters) and a subnet from
    /// [`claim`].
    pub fn new(n: usize, prefix: &str) -> Lan {
        let (tag, net) = claim(prefix);
        let tag = tag.as_str();
        let bridge = format!("{tag}br");
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("10.{net}.200.1/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        forward_rule("-I", &bridge);
        let mut lan = Lan { names: Vec::new(), bridge, tag: tag.to_owned(), net };
        for i in 0..n {
            let ns = format!("{tag}{i}");
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            ip(&["netns", "add", &ns]);
            lan.names.push(ns.clone());
            let (host, peer) = (format!("{tag}h{i}"), lan.dev(i));
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer]);
            ip(&["link", "set", &peer, "netns", &ns]);
            ip(&["link", "set", &host, "master", &lan.bridge]);
            ip(&["link", "set", &host, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", lan.addr(End::Node(i))),
                "dev",
                &peer,
            ]);
            ip(&["-n", &ns, "link", "set", &peer, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        lan
    }

    /// The IPv4 address of an end.
    pub fn addr(&self, e: End) -> String {
        match e {
            End::Host => format!("10.{}.200.1", self.net),
            End::Node(i) => format!("10.{}.200.{}", self.net, i + 2),
        }
    }

    /// Node `i`'s interface (inside its namespace).
    fn dev(&self, i: usize) -> String {
        format!("{}p{i}", self.tag)
    }

    /// Sets (`cut`) or deletes, on end `on`, the neighbour entry for `to`.
    fn neigh(&self, on: End, to: End, cut: bool) {
        let to = self.addr(to);
        let (ns, dev) = match on {
            End::Host => (None, self.bridge.clone()),
            End::Node(i) => (Some(self.names[i].clone()), self.dev(i)),
        };
        let mut args: Vec<String> = Vec::new();
        if let Some(ns) = ns {
            args.extend(["-n".into(), ns]);
        }
        if cut {
            args.extend(
                ["neigh", "replace", &to, "lladdr", NOWHERE, "dev", &dev, "nud", "permanent"]
                    .map(String::from),
            );
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            ip(&args);
        } else {
            args.extend(["neigh", "del", &to, "dev", &dev].map(String::from));
            // Absent already: nothing to heal.
            let _ = Command::new("ip").args(&args).output();
        }
    }

    /// Drops every packet between `a` and `b`, both ways.
    pub fn cut(&self, a: End, b: End) {
        self.neigh(a, b, true);
        self.neigh(b, a, true);
    }

    /// Undoes [`Lan::cut`].
    pub fn heal(&self, a: End, b: End) {
        self.neigh(a, b, false);
        self.neigh(b, a, false);
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in &self.names {
            // Deleting a namespace deletes its veth end, and so the pair.
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).output();
        forward_rule("-D", &self.bridge);
    }
}

/// Inserts (`-I`) or deletes (`-D`) the FORWARD rule accepting traffic within `bridge` (one
/// rule per bridge, so each LAN removes only its own). Without iptables (no Docker on the
/// host, no filtering) there is nothing to do. `-w`: wait for the xtables lock, which
/// another LAN, Docker or a firewall may hold at the same moment (without it iptables
/// fails at once).
fn forward_rule(op: &str, bridge: &str) {
    let args = ["-w", op, "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"];
    match Command::new("iptables").args(args).output() {
        Ok(out) if !out.status.success() && op == "-I" => {
            eprintln!("iptables {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        _ => {}
    }
}
