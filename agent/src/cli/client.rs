//! The CLI's connection: the first voter that answers; gRPC failures as one clear line.

use std::time::Duration;

use baton_proto::v1::admin_client::AdminClient;
use baton_proto::v1::control_client::ControlClient;
use baton_proto::v1::fleet_client::FleetClient;
use baton_proto::v1::lease_client::LeaseClient;
use tonic::transport::Channel;

use crate::rules::limits::MAX_RESPONSE_BYTES;
use crate::transport::tls::TlsMode;
use crate::transport::{Dialer, TransportError};

/// Why a CLI call failed, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no voter reachable at {endpoints}: {reason}")]
    Unreachable { endpoints: String, reason: String },
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    #[error("{endpoint}: {message}")]
    Rejected { endpoint: String, message: String },
    #[error("{endpoint}: permission denied: {message}")]
    Denied { endpoint: String, message: String },
    #[error("{endpoint}: cluster unavailable: {message}")]
    Unavailable { endpoint: String, message: String },
    #[error("{endpoint}: no answer within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
}

/// A connected channel to one voter.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    endpoint: String,
    request_timeout: Duration,
    /// Whether this client speaks plaintext (for the hint when that fails).
    insecure: bool,
}

/// The innermost cause of an error, which names the real problem
/// ("Connection refused") rather than the layers around it.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    let text = current.to_string();
    // "Connection refused (os error 111)" -> "connection refused"
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().collect::<String>() + chars.as_str(),
        None => text,
    }
}

impl Client {
    /// Connects to the first of `endpoints` (`host:port`) that answers.
    pub async fn connect(
        endpoints: &[String],
        connect_timeout: Duration,
        request_timeout: Duration,
        tls: TlsMode,
    ) -> Result<Client, ClientError> {
        let insecure = tls.is_insecure();
        let dialer = Dialer::new(connect_timeout, request_timeout, tls);
        let mut reasons = Vec::new();
        for endpoint in endpoints {
            match dialer.connect(endpoint).await {
                Ok(channel) => {
                    return Ok(Client {
                        channel,
                        endpoint: endpoint.clone(),
                        request_timeout,
                        insecure,
                    })
                }
                Err(TransportError::Address { source, .. }) => {
                    return Err(ClientError::BadEndpoint {
                        endpoint: endpoint.clone(),
                        reason: root_cause(&source),
                    })
                }
                Err(TransportError::ConnectTimeout { timeout, .. }) => {
                    reasons.push(format!("no connection within {timeout:?}"))
                }
                Err(e) => {
                    let reason = root_cause(&e);
                    // A TLS voter drops a plaintext client without a word.
                    if insecure && !reason.contains("refused") {
                        reasons.push(format!(
                            "{reason} (this client speaks plaintext; does the voter require TLS?)"
                        ));
                    } else {
                        reasons.push(reason);
                    }
                }
            }
        }
        reasons.dedup();
        Err(ClientError::Unreachable {
            endpoints: endpoints.join(", "),
            reason: reasons.join("; "),
        })
    }

    /// The voter this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    pub fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone())
    }

    /// The fleet view (`baton hosts`): as large as a fleet of 20,000 hosts.
    pub fn fleet(&self) -> FleetClient<Channel> {
        FleetClient::new(self.channel.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// Per-host control: hold, unhold, reboot-now.
    pub fn control(&self) -> ControlClient<Channel> {
        ControlClient::new(self.channel.clone())
    }

    /// Turns a failed call into a [`ClientError`].
    pub fn error(&self, status: tonic::Status) -> ClientError {
        let endpoint = self.endpoint.clone();
        // The connection itself failed (a TLS voter answers a plaintext
        // client's HTTP/2 with garbage, or hangs up on it).
        let message = status.message();
        let cut_off = status.code() == tonic::Code::Cancelled && !message.contains("Timeout");
        if cut_off || message.contains("h2 protocol error") || message.contains("transport error") {
            let cause = std::error::Error::source(&status)
                .map(root_cause)
                .unwrap_or_else(|| message.to_string());
            let hint = if self.insecure {
                " (this client speaks plaintext; does the voter require TLS?)"
            } else {
                ""
            };
            return ClientError::Unreachable {
                endpoints: endpoint,
                reason: format!("{cause}{hint}"),
            };
        }
        match status.code() {
            tonic::Code::Unavailable => ClientError::Unavailable {
                endpoint,
                message: status.message().to_string(),
            },
            tonic::Code::PermissionDenied => ClientError::Denied {
                endpoint,
                message: status.message().to_string(),
            },
            tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => ClientError::Timeout {
                endpoint,
                timeout: self.request_timeout,
            },
            _ => ClientError::Rejected {
                endpoint,
                message: status.message().to_string(),
            },
        }
    }
}
