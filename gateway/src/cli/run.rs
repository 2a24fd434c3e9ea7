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
        let reboot = running.reboot_request();
        running.wait().await;
        if reboot.is_requested() {
            if let Some(ota) = &config.ota {
                return reboot_now(&ota.reboot_command);
            }
        }
        ExitCode::SUCCESS
    })
}

/// Runs the configured reboot command once the gateway has stopped cleanly
/// (an installed update, or an updated system that is not healthy).
fn reboot_now(command: &[String]) -> ExitCode {
    let Some((program, args)) = command.split_first() else {
        return fail("ota.reboot_command is empty");
    };
    tracing::info!("rebooting: {}", command.join(" "));
    match std::process::Command::new(program).args(args).status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => fail(format!("{} exited with {status}", command.join(" "))),
        Err(e) => fail(format!("cannot run {program}: {e}")),
    }
}
