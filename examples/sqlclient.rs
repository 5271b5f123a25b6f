//! A SQLite client for the crash tests, built on rusqlite (bundled SQLite):
//!
//! `sqlclient write DB JOURNAL_MODE SYNCHRONOUS LOG` inserts rows with increasing ids, one
//! transaction each, and after each commit returns appends the id to LOG and fsyncs it, so
//! LOG lists exactly the commits SQLite reported. Runs until killed.
//!
//! `sqlclient check DB LOG` verifies `PRAGMA integrity_check` is ok and every id in LOG is in
//! the database; prints `ok <rows>` or exits 1 with what is missing.

use std::io::Write;

use rusqlite::Connection;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("write") => write(&args[2], &args[3], &args[4], &args[5]),
        Some("check") => check(&args[2], &args[3]),
        _ => {
            eprintln!("usage: sqlclient write DB MODE SYNC LOG | check DB LOG");
            std::process::exit(2);
        }
    }
}

fn open(db: &str) -> Connection {
    let c = Connection::open(db).expect("open");
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    c
}

fn write(db: &str, mode: &str, sync: &str, log: &str) {
    let conn = open(db);
    conn.pragma_update(None, "journal_mode", mode).unwrap();
    conn.pragma_update(None, "synchronous", sync).unwrap();
    conn.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)").unwrap();
    let mut next: i64 =
        conn.query_row("SELECT coalesce(max(id), 0) / 1000 + 1 FROM t", [], |r| r.get(0)).unwrap();
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    loop {
        // Some transactions are large, to be killed mid-write.
        let n = if next % 17 == 0 { 300 } else { 1 };
        let tx = conn.unchecked_transaction().unwrap();
        for i in 0..n {
            tx.execute("INSERT INTO t(id, v) VALUES (?1, randomblob(500))", [next * 1000 + i])
                .unwrap();
        }
        tx.commit().unwrap();
        writeln!(log, "{}", next * 1000).unwrap();
        log.sync_data().unwrap();
        next += 1;
    }
}

fn check(db: &str, log: &str) {
    let conn = open(db);
    let ic: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    if ic != "ok" {
        eprintln!("integrity_check: {ic}");
        std::process::exit(1);
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut missing = Vec::new();
    for line in text.lines() {
        let id: i64 = line.parse().unwrap();
        let found: i64 =
            conn.query_row("SELECT count(*) FROM t WHERE id = ?1", [id], |r| r.get(0)).unwrap_or(0);
        if found == 0 {
            missing.push(id);
        }
    }
    if !missing.is_empty() {
        eprintln!(
            "{} acknowledged commits missing, first {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        std::process::exit(1);
    }
    let rows: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap_or(0);
    println!("ok {rows}");
}
