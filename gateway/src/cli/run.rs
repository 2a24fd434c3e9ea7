//! `run --config FILE`: the appliance daemon.

use std::path::Path;
use std::process::ExitCode;

use super::fail;
use crate::config::Config;
use crate::daemon;

pub fn run(config_path: &Path) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    daemon::init_logging(&config.gateway.log_level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async {
        let links = daemon::links_from_config(&config);
        let running = match daemon::start(&config, links).await {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        crate::shutdown::cancel_on_signal(running.shutdown_token());
        if let Some(addr) = running.http_addr {
            tracing::info!("status page on http://{addr}/");
        }
        tracing::info!(gateway_id = %running.gateway_id, data_dir = %running.data_dir.display(), "running");
        running.wait().await;
        ExitCode::SUCCESS
    })
}
