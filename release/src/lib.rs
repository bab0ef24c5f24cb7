//! Signed release metadata (#28): which versions exist, their artifacts' digests and sizes,
//! a version floor and the exact downgrades allowed below it, all signed offline by a
//! threshold of release keys in TUF's format. The coordinator only carries it; updaters pin
//! the root and verify it before every install (`verify`), so a coordinator in an
//! attacker's hands cannot install what the release team did not sign, go below the floor,
//! replay or mix old metadata, or freeze the fleet unnoticed.
//!
//! TUF itself (signatures, thresholds, expiry, version rollback, root rotation, hashes
//! between roles) is the `tough` crate's; this crate adds Drover's naming and policy.

pub mod bundle;
pub mod layout;
pub mod policy;
pub mod refusal;
pub mod sign;
pub mod verify;

pub use bundle::{Bundle, BundleError};
pub use layout::{ArtifactTarget, target_name};
pub use policy::{Policy, Rollback};
pub use refusal::Refusal;
pub use verify::{Verified, verify};
