//! The host agent's D-Bus connection: which bus, its name in messages, the call timeout.

use std::time::Duration;

/// How error messages name the bus: operators need to know whether we talked to the real
/// system bus or to a configured address.
pub fn bus_label(address: Option<&str>) -> String {
    match address {
        Some(address) => format!("bus {address}"),
        None => "system bus".to_string(),
    }
}

/// A method call that gets no answer in this time fails instead of hanging the agent's
/// main loop. update_engine and logind answer in milliseconds; libdbus's default of 25 s
/// would come close to the unit's WatchdogSec=30s.
pub const DBUS_METHOD_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the configured bus address, or to the system bus.
pub async fn connect_bus(address: Option<&str>) -> Result<zbus::Connection, zbus::Error> {
    let builder = match address {
        Some(address) => zbus::connection::Builder::address(address)?,
        None => zbus::connection::Builder::system()?,
    };
    builder.method_timeout(DBUS_METHOD_TIMEOUT).build().await
}
