//! The release binary within its size budget (docs/benchmarks.md, "Binary
//! size"): it goes onto every root filesystem slot and into every OTA bundle
//! a solar gateway downloads. A size check, not a timing one: the same
//! sources and profile give the same size on any machine.

use std::path::Path;

use seed_e2e::gateway::binary;

/// x86_64, the test build: 8.6 MiB measured on 2026-12-03, plus headroom.
const BUDGET_X86_64: u64 = 19 * 512 * 1024;
/// aarch64, the Raspberry Pi images' binary, plus headroom (the figure is in
/// docs/benchmarks.md). Issue 13's goal is 6 MiB, not reached yet;
/// docs/benchmarks.md says where the rest is.
const BUDGET_AARCH64: u64 = 17 * 512 * 1024;

#[test]
fn release_binary_is_within_its_size_budget() {
    let x86_64 = binary();
    let size = std::fs::metadata(&x86_64)
        .expect("the release binary exists")
        .len();
    assert!(
        size <= BUDGET_X86_64,
        "{} is {size} bytes, over its budget of {BUDGET_X86_64}: see what grew with \
         `cargo bloat --release -p seed-gateway --crates` (docs/benchmarks.md)",
        x86_64.display()
    );

    // The arm64 test image's build cross-compiles this one; where it has not
    // been built there is nothing to weigh.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let aarch64 = target.join("aarch64-unknown-linux-gnu/release/seed-gateway");
    if let Ok(meta) = std::fs::metadata(&aarch64) {
        assert!(
            meta.len() <= BUDGET_AARCH64,
            "{} is {} bytes, over its budget of {BUDGET_AARCH64}",
            aarch64.display(),
            meta.len()
        );
    } else {
        eprintln!(
            "{} not built: only the x86_64 budget checked",
            aarch64.display()
        );
    }
}
