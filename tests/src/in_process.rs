//! A whole gateway inside the test process (`seed_gateway::daemon`), for
//! tests that need its internals' answers quickly or several links at once;
//! the black-box tests run the real binary instead ([`crate::gateway`]).

use std::net::SocketAddr;
use std::time::Duration;

use radio_bridge::gwmp::GwmpConfig;
use radio_bridge::link::RadioParams;
use seed_gateway::config::{Config, MqttConfig};
use seed_gateway::daemon::{self, Running};
use tempfile::TempDir;

/// A running in-process gateway and what a test talks to.
pub struct InProcessGateway {
    pub running: Running,
    /// The status page and JSON API.
    pub http: SocketAddr,
    /// Where each GWMP link listens, in the order the links were named.
    pub gwmp: Vec<SocketAddr>,
    _data: TempDir,
}

impl InProcessGateway {
    /// Starts a gateway with default settings, a fresh data directory,
    /// HTTP on a free port, one GWMP link per name on a free UDP port, and
    /// `mqtt` as its uplink (none: it queues).
    pub async fn start(links: &[&str], mqtt: Option<MqttConfig>) -> InProcessGateway {
        let data = tempfile::tempdir().expect("a temporary data directory");
        let mut config = Config::default();
        config.gateway.data_dir = data.path().join("data");
        config.http.bind = "127.0.0.1:0".parse().expect("an address");
        config.mqtt = mqtt;
        let mut specs = Vec::new();
        let mut gwmp = Vec::new();
        for &name in links {
            let (spec, addr) = daemon::bound_gwmp_link(
                GwmpConfig::new(name, "127.0.0.1:0".parse().expect("an address")),
                RadioParams::default(),
            )
            .await
            .expect("a GWMP link binds a free UDP port");
            specs.push(spec);
            gwmp.push(addr);
        }
        let running = daemon::start(&config, specs)
            .await
            .expect("the gateway starts");
        let http = running.http_addr.expect("the status page listens");
        InProcessGateway {
            running,
            http,
            gwmp,
            _data: data,
        }
    }

    /// Shuts the gateway down as SIGTERM would and waits (bounded) for it.
    pub async fn stop(self) {
        self.running.shutdown_token().cancel();
        tokio::time::timeout(Duration::from_secs(30), self.running.wait())
            .await
            .expect("the gateway stops within 30 s");
    }
}
