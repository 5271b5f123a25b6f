//! A SQLite client for the crash tests, built on rusqlite (bundled SQLite):
//!
//! `sqlclient write DB JOURNAL_MODE SYNCHRONOUS LOG` inserts rows with increasing ids, one
//! transaction each, and after each commit returns appends the id to LOG and fsyncs it, so
//! LOG lists exactly the commits SQLite reported. Runs until killed.
//!
//! `sqlclient check DB LOG` verifies `PRAGMA integrity_check` is ok and every id in LOG is in
//! the database; prints `ok <rows>` or exits 1 with what is missing.
//!
//! Bank workload (concurrency and replication tests):
//! - `sqlclient bank-init DB MODE ACCOUNTS`: accounts 1..=ACCOUNTS with balance 1000 each.
//! - `sqlclient bank-transfer DB MILLIS SEED`: random transfers, one transaction each, for
//!   MILLIS ms; retries on SQLITE_BUSY; prints the number of transfers.
//! - `sqlclient bank-read DB MILLIS ACCOUNTS [POSFILE]`: read transactions for MILLIS ms; in
//!   each, the total must be ACCOUNTS*1000 and every balance must be read twice the same;
//!   with POSFILE (`<db>-pos`), the TXID read from it must never go backwards. Prints the
//!   number of reads; exits 1 on the first violation.

use std::io::Write;

use rusqlite::Connection;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("write") => write(&args[2], &args[3], &args[4], &args[5]),
        Some("check") => check(&args[2], &args[3]),
        Some("bank-init") => bank_init(&args[2], &args[3], args[4].parse().unwrap()),
        Some("bank-transfer") => {
            bank_transfer(&args[2], args[3].parse().unwrap(), args[4].parse().unwrap())
        }
        Some("bank-read") => {
            bank_read(&args[2], args[3].parse().unwrap(), args[4].parse().unwrap(), args.get(5))
        }
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
        // One write(2) per line: `writeln!` on a File may split it into two, and a kill
        // between them would glue this id to the next run's first one.
        log.write_all(format!("{}\n", next * 1000).as_bytes()).unwrap();
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

fn bank_init(db: &str, mode: &str, accounts: i64) {
    let conn = open(db);
    conn.pragma_update(None, "journal_mode", mode).unwrap();
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS acct(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, pad BLOB)",
    )
    .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for id in 1..=accounts {
        tx.execute("INSERT INTO acct VALUES (?1, 1000, randomblob(300))", [id]).unwrap();
    }
    tx.commit().unwrap();
}

/// xorshift: deterministic per seed, no extra dependency.
fn next_rand(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

#[allow(clippy::disallowed_methods)]
fn bank_transfer(db: &str, millis: u64, seed: u64) {
    let conn = open(db);
    let accounts: i64 = conn.query_row("SELECT count(*) FROM acct", [], |r| r.get(0)).unwrap();
    let mut rng = seed | 1;
    let end = std::time::Instant::now() + std::time::Duration::from_millis(millis);
    let mut done = 0u64;
    while std::time::Instant::now() < end {
        let a = (next_rand(&mut rng) % accounts as u64) as i64 + 1;
        let b = (next_rand(&mut rng) % accounts as u64) as i64 + 1;
        let amount = (next_rand(&mut rng) % 100) as i64;
        let r = (|| -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            conn.execute("UPDATE acct SET balance = balance - ?2 WHERE id = ?1", [a, amount])?;
            conn.execute("UPDATE acct SET balance = balance + ?2 WHERE id = ?1", [b, amount])?;
            conn.execute_batch("COMMIT")
        })();
        match r {
            Ok(()) => done += 1,
            Err(e) if is_busy(&e) => {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Err(e) => panic!("transfer: {e}"),
        }
    }
    println!("{done}");
}

#[allow(clippy::disallowed_methods)]
fn bank_read(db: &str, millis: u64, accounts: i64, pos_file: Option<&String>) {
    let conn = open(db);
    let end = std::time::Instant::now() + std::time::Duration::from_millis(millis);
    let mut reads = 0u64;
    let mut last_txid = 0u64;
    while std::time::Instant::now() < end {
        let r = (|| -> rusqlite::Result<(i64, i64, i64)> {
            conn.execute_batch("BEGIN")?;
            let total: i64 = conn.query_row("SELECT sum(balance) FROM acct", [], |r| r.get(0))?;
            let one: i64 =
                conn.query_row("SELECT balance FROM acct WHERE id = 1", [], |r| r.get(0))?;
            let again: i64 =
                conn.query_row("SELECT balance FROM acct WHERE id = 1", [], |r| r.get(0))?;
            conn.execute_batch("COMMIT")?;
            Ok((total, one, again))
        })();
        let (total, one, again) = match r {
            Ok(v) => v,
            Err(e) if is_busy(&e) => {
                let _ = conn.execute_batch("ROLLBACK");
                continue;
            }
            Err(e) => panic!("read: {e}"),
        };
        if total != accounts * 1000 || one != again {
            eprintln!("inconsistent read: total {total}, balance of 1 read as {one} then {again}");
            std::process::exit(1);
        }
        if let Some(p) = pos_file {
            let text = std::fs::read_to_string(p).unwrap();
            let txid = u64::from_str_radix(text.split('/').next().unwrap_or("0"), 16).unwrap();
            if txid < last_txid {
                eprintln!("position went backwards: {last_txid:x} then {txid:x}");
                std::process::exit(1);
            }
            last_txid = txid;
        }
        reads += 1;
    }
    println!("{reads}");
}
