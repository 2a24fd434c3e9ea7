//! Store benchmark: commit throughput under concurrent ingest, the size on
//! disk of a large backlog, and how fast the uplink can drain it.
//!
//! ```text
//! cargo run --release -p seed-gateway --example bench_store -- \
//!     [--messages 100000] [--callers 64] [--delay-ms 20] [--max-batch 512] [--dir DIR]
//! ```
//!
//! Every caller commits one message at a time, as ingest does for each frame
//! heard, and waits for it to be durable before the next. `--dir` puts the
//! database on a particular disk (the appliance's SD card, say); by default a
//! temporary directory is used and removed afterwards.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use seed_gateway::store::{CommitOutcome, Inbound, Store, StoreOptions};

struct Args {
    messages: u32,
    callers: u32,
    delay_ms: u64,
    max_batch: usize,
    dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        messages: 100_000,
        callers: 64,
        delay_ms: 20,
        max_batch: 512,
        dir: None,
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let value = words.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--messages" => args.messages = number()? as u32,
            "--callers" => args.callers = number()?.max(1) as u32,
            "--delay-ms" => args.delay_ms = number()?,
            "--max-batch" => args.max_batch = number()?.max(1) as usize,
            "--dir" => args.dir = Some(PathBuf::from(value)),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

/// A message shaped like a real one: a ~180-byte signed frame, its JSON form
/// and reception metadata.
fn realistic_message(n: u32) -> Inbound {
    let mut msg_id = [0u8; 16];
    msg_id[..4].copy_from_slice(&n.to_be_bytes());
    msg_id[4..].copy_from_slice(&rand::random::<[u8; 12]>());
    let device = (n % 200) as u8;
    let kind = if n.is_multiple_of(10) {
        "transaction"
    } else {
        "heartbeat"
    };
    Inbound {
        msg_id,
        device_id: [device; 32],
        message_type: kind.to_owned(),
        frame: (0..180).map(|i| (i as u32 ^ n) as u8).collect(),
        message_json: format!(
            r#"{{"v":1,"type":"{kind}","device_id":"{}","seq":{n},"battery_mv":3710,"uptime_s":{},"position":{{"lat":-1.2921,"lon":36.8219}},"neighbors":3,"ledger_height":{}}}"#,
            hex::encode([device; 32]),
            n * 30,
            n / 7
        ),
        rx_json: r#"{"link":"rnode","rssi":-97,"snr":7.5,"freq":868100000,"sf":9,"received_at":"2025-01-01T00:00:00Z"}"#.to_owned(),
        received_at_ms: 1_735_689_600_000 + u64::from(n),
    }
}

fn file_bytes(path: &Path) -> u64 {
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    [path, wal.as_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Bytes per table and index, from SQLite's `dbstat` (pages in use only).
fn space_by_table(path: &Path) -> rusqlite::Result<String> {
    let conn = rusqlite::Connection::open(path)?;
    let mut statement = conn.prepare(
        "SELECT name, SUM(pgsize) FROM dbstat WHERE name NOT LIKE 'sqlite_%'
         GROUP BY name ORDER BY 2 DESC",
    )?;
    let parts = statement
        .query_map([], |row| {
            Ok(format!("{} {}", row.get::<_, String>(0)?, mib(row.get(1)?)))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(parts.join(", "))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| format!("{e}\nusage: bench_store [--messages N] [--callers N] [--delay-ms N] [--max-batch N] [--dir DIR]"))?;
    let temp = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let path = dir.join("bench_store.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let options = StoreOptions {
        quota_bytes: u64::MAX / 2, // measure raw throughput, no compaction
        group_commit_delay: Duration::from_millis(args.delay_ms),
        max_batch: args.max_batch,
        ..StoreOptions::default()
    };
    let sample = realistic_message(1);
    let payload = sample.frame.len() + sample.message_json.len() + sample.rx_json.len();
    println!(
        "store benchmark: {} messages (~{payload} payload bytes each), {} concurrent callers of 1 message, \
         group_commit_delay {} ms, max_batch {}, file {}",
        args.messages,
        args.callers,
        args.delay_ms,
        args.max_batch,
        path.display()
    );

    // 1. Commit throughput.
    let store = Store::open(&path, options.clone())?;
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let started = Instant::now();
    let callers: Vec<_> = (0..args.callers)
        .map(|_| {
            let (store, next, total) = (store.clone(), Arc::clone(&next), args.messages);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= total {
                        return Ok::<_, seed_gateway::store::StoreError>(latencies);
                    }
                    let asked = Instant::now();
                    let outcome = store.commit(vec![realistic_message(n)]).await?;
                    latencies.push(asked.elapsed());
                    assert!(
                        matches!(outcome[0], CommitOutcome::Stored { .. }),
                        "{outcome:?}"
                    );
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for caller in callers {
        latencies.extend(caller.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let stats = store.stats();
    println!(
        "commit:  {:.0} messages/s durable; {} transactions ({:.1} messages each); \
         commit latency p50 {:.1} ms, p99 {:.1} ms; {:.1} s in all",
        f64::from(args.messages) / elapsed.as_secs_f64(),
        stats.transactions_total,
        f64::from(args.messages) / stats.transactions_total.max(1) as f64,
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        elapsed.as_secs_f64()
    );
    store.close().await?;

    // 2. Size of the backlog on disk, against what the quota accounts.
    let store = Store::open(&path, options.clone())?;
    let stats = store.stats();
    let on_disk = file_bytes(&path);
    println!(
        "backlog: {} messages queued: {} on disk ({} bytes/message), quota accounts {} ({} bytes/message)",
        stats.backlog,
        mib(on_disk),
        on_disk / stats.backlog.max(1),
        mib(stats.bytes_used),
        stats.bytes_used / stats.backlog.max(1)
    );
    println!("         by table: {}", space_by_table(&path)?);

    // 3. Draining, as the uplink would: page through, publish, mark.
    let started = Instant::now();
    let mut cursor = 0;
    let mut drained = 0u64;
    loop {
        let page = store.pending(cursor, 500).await?;
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        drained += page.len() as u64;
        store
            .mark_published(page.iter().map(|e| e.seq).collect())
            .await?;
    }
    let elapsed = started.elapsed();
    let stats = store.stats();
    println!(
        "drain:   {:.0} messages/s read and marked published (pages of 500); afterwards backlog {}, \
         quota accounts {} (the remembered msg_ids)",
        drained as f64 / elapsed.as_secs_f64(),
        stats.backlog,
        mib(stats.bytes_used)
    );
    println!(
        "         by table: {} ({} remembered msg_ids)",
        space_by_table(&path)?,
        stats.seen_ids
    );
    store.close().await?;
    println!(
        "after close (incremental vacuum + checkpoint): {} on disk",
        mib(file_bytes(&path))
    );
    if args.dir.is_some() {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    Ok(())
}
