//! Drover's coordinator: serves target versions to updaters over gRPC, records every
//! agent's version and health, and lets admins steer channels.
//!
//! Layers, outer depending on inner only: `domain` (pure) ← `store` ← `fleet` ← `grpc`,
//! `http`, `server`. droverctl is its own crate (`ctl/`). See ARCHITECTURE.md.
#![forbid(unsafe_code)]

pub mod domain;
pub mod edge;
pub mod error;
mod failpoint;
pub mod fleet;
pub mod grpc;
pub mod http;
pub mod key_files;
pub mod listener;
pub mod live;
pub mod metrics;
pub mod pki;
mod pki_grace;
pub mod profile;
pub mod readiness;
pub mod retention;
pub mod rollout;
pub mod server;
pub mod service_manager;
pub mod store;
pub mod supervisor;
pub mod tls;
pub mod webhook;
