//! seed-e2e: black-box test harnesses built from real parts.
//!
//! - [`gateway`]: the real `seed-gateway` binary as a child process, its
//!   config, its JSON API, SIGTERM and SIGKILL.
//! - [`mosquitto`]: a real Mosquitto broker per test (plain, password, TLS
//!   listeners; stop/restart on the same ports) and a collecting subscriber.
//! - [`pki`]: a throw-away CA and certificates made with `openssl`.
//! - [`memory_outbox`]: an in-memory `Outbox` for uplink tests and benchmarks.
//! - [`qemu`]: the appliance test image booted in QEMU (status page port
//!   forward, RNode port, debug shell, power cut).

pub mod gateway;
pub mod memory_outbox;
pub mod mosquitto;
pub mod pki;
pub mod qemu;
