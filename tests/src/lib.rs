//! seed-e2e: black-box test harnesses built from real parts.
//!
//! - [`bundle_server`]: an HTTP file server for update bundles (Range,
//!   broken transfers, impossible sizes).
//! - [`browser`]: a real headless Chromium (chromedriver + fantoccini) with
//!   a phone-sized window, for the status page.
//! - [`demo`]: `seed-gateway demo` as a child process, with what its banner
//!   says (gateway id, status page, simulated concentrator's GWMP port).
//! - [`frames`]: signed Seed frames to inject into emulated concentrators.
//! - [`gateway`]: the real `seed-gateway` binary as a child process, its
//!   config, its JSON API, SIGTERM and SIGKILL.
//! - [`in_process`]: a whole gateway inside the test process, with GWMP
//!   links on free ports.
//! - [`mosquitto`]: a real Mosquitto broker per test (plain, password, TLS
//!   listeners; stop/restart on the same ports) and a collecting subscriber.
//! - [`ota_reports`]: the backend's side of an update: command hashes and
//!   the reports on `ota/progress`.
//! - [`pki`]: a throw-away CA and certificates made with `openssl`.
//! - [`memory_outbox`]: an in-memory `Outbox` for uplink tests and benchmarks.
//! - [`qemu`]: the appliance test image booted in QEMU (status page port
//!   forward, RNode port, debug shell, power cut).
//! - [`rauc`]: RAUC update bundles made with `image/make-bundle.sh` and
//!   checked with Debian's `rauc` on the host; test keys; ext4 edits with
//!   debugfs; deliberate damage.
//! - [`simulate`]: `seed-gateway simulate` (simulated devices behind an
//!   emulated packet forwarder or RNode) as a child process, and its summary.

pub mod browser;
pub mod bundle_server;
pub mod demo;
pub mod frames;
pub mod gateway;
pub mod in_process;
pub mod memory_outbox;
pub mod mosquitto;
pub mod ota_reports;
pub mod pki;
pub mod qemu;
pub mod rauc;
pub mod simulate;

/// Where tests leave files for people to look at (gitignored): screenshots,
/// and the whole console of a QEMU guest whose test failed.
pub fn artifacts_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts")
}
