//! The gRPC edge: tonic services over the fleet. Proto types live here and in `convert`.

mod admin_auth;
mod admin_enrolment;
mod admin_reads;
mod admin_releases;
mod admin_service;
mod admin_steps;
pub mod convert;
mod enrolment_service;
#[cfg(test)]
mod fuzz;
mod hello_gate;
mod identity_refusals;
mod inbound_budget;
pub mod peer;
pub mod rollout_convert;
mod session_stream;
pub mod strata_convert;
pub mod timing;
mod updater_service;
pub mod verdict_convert;

pub use admin_auth::interceptor as admin_interceptor;
pub use admin_service::AdminApi;
pub use enrolment_service::{EnrolmentApi, MAX_ENROLMENT_MESSAGE_BYTES};
pub use updater_service::UpdaterApi;

/// Updaters send small messages; anything larger is refused before it is decoded.
pub const MAX_UPDATER_MESSAGE_BYTES: usize = 64 * 1024;
pub const MAX_ADMIN_MESSAGE_BYTES: usize = 1024 * 1024;
