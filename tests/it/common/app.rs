//! The example app (`examples/app.py`) behind each node's proxy, for the proxy's tests and
//! benchmark: adds `proxy:` and the app under `exec` to every node's config.

use std::path::Path;

use super::cluster::{NodeNet, free_port};

/// Adds `proxy:` (on a fresh port, `proxy_extra` appended: lines indented by two spaces)
/// and the example app under `exec` (database `app.db`, named `n<i>` in `X-App-Node`) to
/// every node of `nets`, whose data lives under `root`; returns each node's proxy address.
pub fn with_app(root: &Path, nets: &mut [NodeNet], proxy_extra: &str) -> Vec<String> {
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/app.py");
    nets.iter_mut()
        .enumerate()
        .map(|(i, net)| {
            let (proxy, target) = (free_port(), free_port());
            let db = root.join(format!("n{}", i + 1)).join("mnt/app.db");
            // Top-level keys after `data:` (the cluster writes `data_extra` right there).
            // `exec` so that the shell becomes the app and signals reach it.
            net.data_extra = format!(
                "proxy:\n  addr: \"127.0.0.1:{proxy}\"\n  target: \"127.0.0.1:{target}\"\n  \
                 db: app.db\n{proxy_extra}exec:\n  - cmd: \"APP_NODE=n{n} exec python3 {app} \
                 --db {db} --addr 127.0.0.1:{target}\"\n",
                n = i + 1,
                app = app.display(),
                db = db.display(),
            );
            format!("127.0.0.1:{proxy}")
        })
        .collect()
}
