//! Test fakes for baton, in one place: a private D-Bus with fake services, a fake Kubernetes API, a fake HTTP server; and /proc readings.
//!
//! Real parts where they can run here (a real `dbus-daemon`, kube's real
//! client over HTTP); fakes only for the services no test machine may run
//! (update_engine, logind, a Kubernetes API server).

pub mod dbus;
pub mod http_fake;
pub mod kubernetes_api;
pub mod proc_stat;
