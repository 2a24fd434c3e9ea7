//! In progress: wiring of links, ingest, store, uplink and web UI.
use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct DemoArgs {}
#[derive(clap::Args)]
pub struct SimulateArgs {}

pub fn run_from_file(_config: &Path) -> ExitCode {
    crate::cli::fail("run: not wired yet")
}
pub fn demo(_args: DemoArgs) -> ExitCode {
    crate::cli::fail("demo: not wired yet")
}
pub fn simulate(_args: SimulateArgs) -> ExitCode {
    crate::cli::fail("simulate: not wired yet")
}
