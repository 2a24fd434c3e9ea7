//! Builds the configured radio links: one driver per `[[link]]` entry, each
//! with the recipe to build it again when the admin restarts it.

use std::io;
use std::net::SocketAddr;

use radio_bridge::gwmp::{GwmpConfig, GwmpLink};
use radio_bridge::kiss::rnode::{RnodeConfig, RnodeLink};
use radio_bridge::link::{Link, RadioParams};

use super::{LinkSpec, Rebuild};
use crate::config::{Config, LinkSection};

/// The links a config asks for, ready to start.
pub fn links_from_config(config: &Config) -> Vec<LinkSpec> {
    config
        .links
        .iter()
        .map(|section| {
            let params = section.radio_params();
            let rebuild: Rebuild = match section {
                LinkSection::Gwmp { name, bind, .. } => {
                    let config = GwmpConfig::new(name.clone(), *bind);
                    Box::new(move || Box::new(GwmpLink::new(config.clone())) as Box<dyn Link>)
                }
                LinkSection::Rnode { name, port, .. } => {
                    let config = RnodeConfig::new(name.clone(), port.clone(), params);
                    Box::new(move || Box::new(RnodeLink::new(config.clone())) as Box<dyn Link>)
                }
            };
            LinkSpec {
                link: rebuild(),
                kind: section.kind(),
                params,
                rebuild: Some(rebuild),
            }
        })
        .collect()
}

/// A GWMP link whose socket is bound now (port 0 picks a free one, as the
/// demo and tests do), and its address. A restart binds the same address
/// again: the old driver has closed its socket by then, and a UDP port has
/// no TIME_WAIT, so forwarders keep sending to where they always did.
pub async fn bound_gwmp_link(
    config: GwmpConfig,
    params: RadioParams,
) -> io::Result<(LinkSpec, SocketAddr)> {
    let link = GwmpLink::bind(config.clone()).await?;
    let addr = link
        .local_addr()
        .ok_or_else(|| io::Error::other("bound GWMP socket has no local address"))?;
    let again = GwmpConfig {
        bind: addr,
        ..config
    };
    let spec = LinkSpec {
        link: Box::new(link),
        kind: "gwmp",
        params,
        rebuild: Some(Box::new(move || {
            Box::new(GwmpLink::new(again.clone())) as Box<dyn Link>
        })),
    };
    Ok((spec, addr))
}
