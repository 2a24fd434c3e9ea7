//! `run --config FILE`: the appliance daemon.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

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
                return reboot_now(&ota.reboot_command).await;
            }
        }
        ExitCode::SUCCESS
    })
}

/// After a successful reboot command, how long the stopped gateway waits
/// for the system to stop it before it gives up and exits with an error.
const REBOOT_WAIT: Duration = Duration::from_secs(300);

/// Runs the configured reboot command once the gateway has stopped cleanly
/// (an installed update, or an updated system that is not healthy).
///
/// `reboot` only asks init to take the system down, and returns. Were the
/// gateway to exit then, its supervisor would start it again while the
/// system stops, and a gateway started in that window would serve radios
/// and the broker for a few seconds and be cut off. So it stays, stopped,
/// until init's SIGTERM (bounded by [`REBOOT_WAIT`]; if the system does not
/// go down, the gateway that starts next asks again: see the OTA agent).
async fn reboot_now(command: &[String]) -> ExitCode {
    let Some((program, args)) = command.split_first() else {
        return fail("ota.reboot_command is empty");
    };
    // Listening before the command runs: the SIGTERM may come at once.
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot listen for SIGTERM: {e}")),
    };
    tracing::info!("rebooting: {}", command.join(" "));
    match tokio::process::Command::new(program)
        .args(args)
        .status()
        .await
    {
        Ok(status) if status.success() => {}
        Ok(status) => return fail(format!("{} exited with {status}", command.join(" "))),
        Err(e) => return fail(format!("cannot run {program}: {e}")),
    }
    tokio::select! {
        _ = terminate.recv() => ExitCode::SUCCESS,
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
        _ = tokio::time::sleep(REBOOT_WAIT) => fail(format!(
            "the system did not go down within {} s of `{}`",
            REBOOT_WAIT.as_secs(),
            command.join(" ")
        )),
    }
}
