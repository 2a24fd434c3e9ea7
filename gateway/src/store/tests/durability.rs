//! kill -9 at a random instant loses nothing `commit` reported as durable.
//!
//! The test re-runs this test binary as a child process in "writer" mode
//! (the ignored test `crash_child_writer`, selected by an environment
//! variable). The child commits batches from several tasks as fast as it
//! can, publishes some, and prints the msg_id of every message `commit`
//! answered `Stored` or `Duplicate` for, flushing after each line: those are
//! the messages ingest would have acked over the radio. The parent SIGKILLs
//! it after a random number of lines, reopens the file and checks every
//! printed msg_id is still there (in the outbox, or, if it was published, in
//! the seen record). Three rounds run on the same file, so recovery from a
//! killed writer is exercised as well.
//!
//! SIGKILL tests the process dying at any point, including inside a commit.
//! Power loss additionally depends on fsync reaching the medium, which is
//! what `synchronous=FULL` asks SQLite to do and cannot be simulated here.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::message;
use crate::store::{CommitOutcome, Store, StoreOptions};

const CHILD_DB_ENV: &str = "SEED_STORE_CRASH_CHILD_DB";
const CHILD_ROUND_ENV: &str = "SEED_STORE_CRASH_CHILD_ROUND";
const CHILD_TEST: &str = "store::tests::durability::crash_child_writer";
const ACKED: &str = "ACKED ";

#[test]
#[ignore = "the writer half of kill9_loses_nothing_acknowledged, which runs it as a child process"]
fn crash_child_writer() {
    let Some(path) = std::env::var_os(CHILD_DB_ENV) else {
        eprintln!("{CHILD_TEST} only runs as the child of kill9_loses_nothing_acknowledged");
        return;
    };
    let round: u32 = std::env::var(CHILD_ROUND_ENV)
        .ok()
        .and_then(|r| r.parse().ok())
        .expect("round number");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(child_writes_forever(PathBuf::from(path), round));
}

async fn child_writes_forever(path: PathBuf, round: u32) {
    let options = StoreOptions {
        group_commit_delay: Duration::from_millis(2),
        max_batch: 64,
        ..StoreOptions::default()
    };
    let store = Store::open(&path, options).expect("child opens the store");
    let writers: Vec<_> = (0..6u32)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut stored_seqs = Vec::new();
                for i in 0u32.. {
                    // Unique per round, task and iteration; 1..=3 messages.
                    let base = (round << 28) | (task << 22) | (i << 2);
                    let mut batch: Vec<_> = (0..1 + i % 3)
                        .map(|k| {
                            message(
                                base | k,
                                ["transaction", "heartbeat", "ledger_sync"][k as usize],
                                task as u8,
                            )
                        })
                        .collect();
                    if i % 5 == 4 {
                        // A retry of an earlier message: must come back Duplicate.
                        batch.push(message(base - 8, "transaction", task as u8));
                    }
                    let outcomes = store.commit(batch.clone()).await.expect("commit");
                    {
                        let mut out = std::io::stdout().lock();
                        for (msg, outcome) in batch.iter().zip(&outcomes) {
                            match outcome {
                                CommitOutcome::Stored { seq } => stored_seqs.push(*seq),
                                CommitOutcome::Duplicate => {}
                                CommitOutcome::Refused => panic!("refused with the default quota"),
                            }
                            writeln!(out, "{ACKED}{}", hex::encode(msg.msg_id)).unwrap();
                        }
                        out.flush().unwrap();
                    }
                    if i % 4 == 3 {
                        // The uplink publishing some of what was stored earlier.
                        let half = stored_seqs.len() / 2;
                        store
                            .mark_published(stored_seqs.drain(..half).collect())
                            .await
                            .expect("publish");
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer task");
    }
}

/// Every id must be in `seen`, and an id not yet retired must be in the outbox.
fn assert_all_present(path: &Path, acked: &HashSet<String>, round: u32) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut lookup = conn
        .prepare(
            "SELECT s.retired_at_ms IS NULL, EXISTS (SELECT 1 FROM outbox o WHERE o.msg_id = s.msg_id)
             FROM seen s WHERE s.msg_id = ?1",
        )
        .unwrap();
    for id in acked {
        let msg_id = hex::decode(id).unwrap();
        let found: Option<(bool, bool)> = lookup
            .query_row([&msg_id], |row| Ok((row.get(0)?, row.get(1)?)))
            .ok();
        match found {
            None => panic!("round {round}: msg_id {id} was acked but is not in the store"),
            Some((true, false)) => {
                panic!("round {round}: msg_id {id} is unpublished but missing from the outbox")
            }
            Some(_) => {}
        }
    }
}

#[test]
fn kill9_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.sqlite");
    let mut acked_all = HashSet::new();
    for round in 1..=3u32 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                CHILD_TEST,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DB_ENV, &path)
            .env(CHILD_ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(id) = line.strip_prefix(ACKED) {
                    if lines_tx.send(id.to_owned()).is_err() {
                        break;
                    }
                }
            }
        });

        let kill_after: usize = rand::random_range(30..600);
        let mut acked = HashSet::new();
        while acked.len() < kill_after {
            match lines.recv_timeout(Duration::from_secs(60)) {
                Ok(id) => {
                    acked.insert(id);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "round {round}: the child writer stopped after {} acks (see its stderr above)",
                        acked.len()
                    );
                }
            }
        }
        // A random extra moment, so the kill lands anywhere in a group.
        std::thread::sleep(Duration::from_micros(rand::random_range(0..5_000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        // Lines the child printed before dying are still in the pipe.
        acked.extend(lines.try_iter());
        assert!(acked.len() >= kill_after);

        assert_all_present(&path, &acked, round);
        acked_all.extend(acked);
        assert_all_present(&path, &acked_all, round);
    }

    // The survivor opens normally and its counts match the file.
    let store = Store::open(&path, StoreOptions::default()).unwrap();
    let stats = store.stats();
    assert!(stats.seen_ids >= acked_all.len() as u64);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pending = runtime.block_on(store.pending(0, usize::MAX)).unwrap();
    assert_eq!(pending.len() as u64, stats.backlog);
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
    runtime.block_on(store.close()).unwrap();
}
