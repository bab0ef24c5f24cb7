//! Compiles `drover.v1` with protox (pure Rust), so building needs no protoc binary.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/drover/v1/updater.proto",
        "proto/drover/v1/admin.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    // prost-build does not write the descriptor set when given one, and reflection needs it.
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("drover_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    // Decode errors are the sender's fault: INVALID_ARGUMENT, not tonic_prost's INTERNAL.
    tonic_prost_build::configure()
        .codec_path("crate::codec::DroverCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
