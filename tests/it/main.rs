//! Every integration test, in one binary sharing one harness (`common`): one module per
//! concern, run as `cargo test --test it <module>::<test>` (`cargo test --test it
//! replication::` runs a module).
//!
//! The tests run real parts: FUSE mounts (in this process and in `litefleet mount`
//! processes), `sqlite3` and `python3` processes, Consul agents, network namespaces and
//! SQLite's TCL suite. Each test first checks the parts it needs (`common::need`) and fails
//! with one line saying what is missing and how to get it.
//!
//! They run in this one process, two at a time by default (`--test-threads`): whatever a
//! test takes from the machine (a directory, a port, a namespace, an interface, a subnet, an
//! iptables rule) is unique to it; see `common`.

mod common;

mod cli_ltx;
mod crash_loop;
mod damage;
mod demo;
mod diverge;
mod failover;
mod fencing;
mod fuzz_seeds;
mod handoff;
mod http_api;
mod lease_consul;
mod logging;
mod ltx_vectors;
mod metrics;
mod mount_basic;
mod mount_cli;
mod mount_load;
mod mount_modes;
mod mount_restart;
mod netns;
mod other_files;
mod ownership;
mod partition;
mod proxy;
mod replication;
mod sqlite_features;
mod sqlite_suite;
mod superjournal;
mod sync_repl;
mod tls;
mod transfer;
mod wire_codec;
