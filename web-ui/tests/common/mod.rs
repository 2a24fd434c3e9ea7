//! Shared pieces of the HTTP tests: a fixture gateway, a tiny client, and a running server.

#![allow(dead_code)]

pub mod client;
pub mod fixture;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use fixture::Fixture;

/// A real server on 127.0.0.1 with a free port, serving `fixture`.
pub struct Server {
    pub addr: SocketAddr,
    pub fixture: Arc<Fixture>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
}

pub async fn start(fixture: Fixture) -> Server {
    let fixture = Arc::new(fixture);
    let (listener, addr) = web_ui::bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(web_ui::serve(listener, fixture.clone(), shutdown.clone()));
    Server {
        addr,
        fixture,
        shutdown,
        task,
    }
}
