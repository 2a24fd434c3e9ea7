//! seed-gateway: the durable core between the radio and the MQTT backend.
//!
//! Module map:
//! - [`config`]: the TOML configuration, its defaults, and `check-config` errors
//!   that name the key and the line.
//! - [`store`]: the SQLite store (WAL, group commit, migrations, quota).
//! - [`uplink`]: the MQTT connection: topics, QoS-1 publishing from the store,
//!   state and Last Will, reconnect with backoff.
//! - [`neighbors`]: the neighbor table built from heartbeats.
//! - [`scheduler`]: the one transmit queue: priorities, ack batching, duty cycle.
//! - [`airtime_journal`]: the duty-cycle ledger on disk, read back after a restart.
//! - [`ingest`]: link event → decode/verify → de-dup → store → radio ack.
//! - [`heartbeat`]: the gateway's own heartbeat, paced by its power supply.
//! - [`daemon`]: wires links, ingest, store, uplink and web UI together; `run` and `demo`.
//! - [`ota`]: over-the-air updates with RAUC: command, download, checks,
//!   install, reboot, health check, rollback report.
//! - [`peering`]: trusted neighbour gateways: the authenticated link and
//!   custody of each other's outbox.
//! - [`logs`]: recent log lines kept in memory, and the system log's tail, for the
//!   diagnostic bundle.
//! - [`cli`]: the subcommands of the `seed-gateway` binary.
//! - [`state`]: counters, link states, events and traffic shared with the status page.
//! - [`shutdown`]: the shutdown signal shared by every task.

pub mod airtime_journal;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod heartbeat;
pub mod ingest;
pub mod logs;
pub mod neighbors;
pub mod ota;
pub mod peering;
pub mod scheduler;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod uplink;
