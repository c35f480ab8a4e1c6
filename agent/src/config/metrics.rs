//! `[metrics]`: where the Prometheus endpoint listens (off by default), and its validation.

use std::net::SocketAddr;

use super::inputs::MetricsInputs;
use super::validate::Validator;
use super::ConfigError;

/// `[metrics]`: the plaintext Prometheus endpoint, present when `listen` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// `listen`: `ADDR:PORT` of `GET /metrics`. A loopback address unless
    /// `allow_remote = true` (the endpoint is plaintext and unauthenticated).
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
                    "{listen} is not a loopback address: the metrics endpoint is plaintext \
                     and answers anyone who reaches it; bind it to 127.0.0.1 or [::1], or \
                     set [metrics] allow_remote = true for a management network"
                ),
            ));
        }
        Ok(Some(MetricsSettings { listen }))
    }
}
