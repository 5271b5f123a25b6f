//! `litefleet certs`: cluster CA, node certificates, development set.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use litefleet::certs;

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a cluster CA: writes ca.pem and ca-key.pem into DIR.
    Ca {
        #[arg(long)]
        out: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "litefleet cluster CA")]
        name: String,
    },
    /// Issue a node certificate signed by the CA in --ca-dir: writes <NAME>.pem and
    /// <NAME>-key.pem into --out.
    Issue {
        /// Directory holding ca.pem and ca-key.pem.
        #[arg(long)]
        ca_dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Node name (common name, and the first subject alternative name).
        #[arg(long)]
        name: String,
        /// More DNS names or IP addresses the node is reached at (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
    },
    /// Development set (INSECURE, shared keys): ca.pem, ca-key.pem and, per node,
    /// <node>.pem and <node>-key.pem valid for the node name, localhost and 127.0.0.1.
    Dev {
        #[arg(long)]
        out: PathBuf,
        /// Comma-separated node names.
        #[arg(long, value_delimiter = ',', default_value = "n1,n2,n3")]
        nodes: Vec<String>,
    },
}

pub fn run(cmd: CertsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CertsCommand::Ca { out, name } => {
            let ca = certs::new_ca(&name, certs::DEFAULT_VALIDITY)?;
            certs::write(&out, "ca", &ca)?;
            println!("wrote {0}/ca.pem and {0}/ca-key.pem", out.display());
        }
        CertsCommand::Issue { ca_dir, out, name, sans } => {
            let ca = certs::read(&ca_dir, "ca").context("reading the CA")?;
            let mut all = vec![name.clone()];
            all.extend(sans);
            let pem = certs::issue(&ca, &name, &all, certs::DEFAULT_VALIDITY)?;
            certs::write(&out, &name, &pem)?;
            println!("wrote {0}/{name}.pem and {0}/{name}-key.pem for {all:?}", out.display());
        }
        CertsCommand::Dev { out, nodes } => {
            certs::dev(&out, &nodes)?;
            println!(
                "wrote an INSECURE development CA and certificates for {} into {}",
                nodes.join(", "),
                out.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
