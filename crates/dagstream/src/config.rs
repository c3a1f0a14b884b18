//! The node configuration file: every tunable, in TOML.

use anyhow::{Context, Result};
use dagstream_observer::ObserverConfig;
use dagstream_publisher::PublisherConfig;
use dagstream_sink::SinkConfig;
use dagstream_validator::retention::ValidatorConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `--config FILE`. Sections are optional; unknown keys are refused, so a
/// misspelt setting is an error, not silently ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Serving the block and commit streams (validators, relaying
    /// observers).
    pub publisher: PublisherConfig,
    /// Following upstreams (observers).
    pub observer: ObserverConfig,
    /// The simulated committee's node: its retention.
    pub validator: ValidatorConfig,
    /// Publishing the commit sequence to NATS JetStream (observers).
    pub sink: SinkConfig,
}

impl NodeConfig {
    pub fn load(path: Option<&Path>) -> Result<NodeConfig> {
        let Some(path) = path else {
            return Ok(NodeConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let config: NodeConfig = toml::from_str(&text).map_err(|err| {
            anyhow::anyhow!("invalid config file {}: {}", path.display(), err.message())
                .context(err.to_string())
        })?;
        config
            .publisher
            .validate()
            .with_context(|| format!("invalid config file {}", path.display()))?;
        config
            .observer
            .validate()
            .with_context(|| format!("invalid config file {}", path.display()))?;
        config
            .validator
            .validate()
            .with_context(|| format!("invalid config file {}", path.display()))?;
        config
            .sink
            .validate()
            .with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(config)
    }

    /// The defaults, documented, as `dagstream config print-default` shows
    /// them.
    pub fn default_toml() -> String {
        let body = toml::to_string_pretty(&NodeConfig::default()).expect("defaults serialize");
        format!(
            "# dagstream node configuration: every tunable with its default.\n\
             # Pass with --config FILE; flags override it. Unknown keys are refused.\n\
             # The meaning and reason of each value: docs/protocol.md (publisher),\n\
             # docs/observer.md (observer), docs/archive.md (validator retention)\n\
             # and docs/sink.md (sink).\n\n{body}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_defaults_parse_back_to_the_defaults() {
        let text = NodeConfig::default_toml();
        let parsed: NodeConfig = toml::from_str(&text).unwrap();
        assert_eq!(parsed, NodeConfig::default());
        assert!(text.contains("[publisher]") && text.contains("[observer.subscriber]"));
    }

    #[test]
    fn an_unknown_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[observer]\nstall_timeout_msec = 3\n").unwrap();
        let err = format!("{:#}", NodeConfig::load(Some(&path)).unwrap_err());
        assert!(err.contains("stall_timeout_msec"), "{err}");
        std::fs::write(
            &path,
            "[observer.subscriber]\nresume_blocks_queue_size = 900\n",
        )
        .unwrap();
        let err = format!("{:#}", NodeConfig::load(Some(&path)).unwrap_err());
        assert!(err.contains("resume_blocks_queue_size"), "{err}");
    }
}
