//! Builds the configured radio links: one driver per `[[link]]` entry.

use radio_bridge::gwmp::{GwmpConfig, GwmpLink};
use radio_bridge::kiss::rnode::{RnodeConfig, RnodeLink};

use super::LinkSpec;
use crate::config::{Config, LinkSection};

/// The links a config asks for, ready to start.
pub fn links_from_config(config: &Config) -> Vec<LinkSpec> {
    config
        .links
        .iter()
        .map(|section| {
            let params = section.radio_params();
            let link: Box<dyn radio_bridge::link::Link> = match section {
                LinkSection::Gwmp { name, bind, .. } => {
                    Box::new(GwmpLink::new(GwmpConfig::new(name.clone(), *bind)))
                }
                LinkSection::Rnode { name, port, .. } => Box::new(RnodeLink::new(
                    RnodeConfig::new(name.clone(), port.clone(), params),
                )),
            };
            LinkSpec {
                link,
                kind: section.kind(),
                params,
            }
        })
        .collect()
}
