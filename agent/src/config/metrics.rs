//! `[metrics]`: where the Prometheus endpoint listens (off by default), and its validation.

use std::net::SocketAddr;

use super::inputs::MetricsInputs;
use super::validate::Validator;
use super::ConfigError;

/// `[metrics]`: the Prometheus endpoint, present when `listen` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// `listen`: `ADDR:PORT` of `GET /metrics`. A loopback address unless
    /// `allow_remote = true`. With `[tls]` it is HTTPS and wants a monitor
    /// (or admin) certificate; in an insecure cluster it is plaintext and
    /// answers anyone who reaches it.
    pub listen: SocketAddr,
}

impl Validator<'_> {
    /// `None` (the default: no endpoint) when `[metrics] listen` is not set.
    pub(super) fn metrics(
        &self,
        inputs: MetricsInputs,
    ) -> Result<Option<MetricsSettings>, ConfigError> {
        let allow_remote = inputs.allow_remote.as_ref().is_some_and(|at| at.value);
        let Some(at) = inputs.listen else {
            return Ok(None);
        };
        let listen = at.value.parse::<SocketAddr>().map_err(|e| {
            self.error(
                &at,
                "metrics.listen",
                format!(
                    "invalid socket address {:?}: {e}; write ADDR:PORT, e.g. \"127.0.0.1:9464\"",
                    at.value
                ),
            )
        })?;
        if !listen.ip().is_loopback() && !allow_remote {
            return Err(self.error(
                &at,
                "metrics.listen",
                format!(
                    "{listen} is not a loopback address: the metrics endpoint serves a local \
                     scraper by default (plaintext to anyone in an insecure cluster); bind it \
                     to 127.0.0.1 or [::1], or set [metrics] allow_remote = true for a \
                     management network (with [tls], scrapers need a monitor certificate)"
                ),
            ));
        }
        Ok(Some(MetricsSettings { listen }))
    }
}
