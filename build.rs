//! Compiles `proto/fastchat/v1/*.proto` into Rust with tonic-prost-build. protox parses the protos
//! in pure Rust, so the build needs no `protoc`; the descriptor set it yields is also written to
//! `OUT_DIR` for gRPC server reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/fastchat/v1/chat.proto",
        "proto/fastchat/v1/presence.proto",
        "proto/fastchat/v1/metrics.proto",
    ];
    let file_descriptors = protox::compile(protos, ["proto"])?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("fastchat_descriptor.bin"),
        file_descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .codec_path("crate::codec::LenientCodec")
        .compile_fds(file_descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
