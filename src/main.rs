//! The `litefleet` command. Parses arguments, installs the tracing subscriber and dispatches;
//! everything else lives in the library or in `cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse_from(cli::go_flags(std::env::args_os()));
    // Defaults first, so every command logs; `mount` switches it in place to its config's
    // `log:` settings (`litefleet::logging::configure`).
    if let Err(e) = litefleet::logging::install() {
        eprintln!("warning: {e}");
    }
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
