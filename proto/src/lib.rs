//! The `drover.v1` wire contract. Proto types stay at the edges: the coordinator and the
//! updater convert them to domain types as soon as they arrive.
#![forbid(unsafe_code)]

pub mod codec;

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("drover.v1");

    /// Encoded file descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("drover_descriptor");
}
