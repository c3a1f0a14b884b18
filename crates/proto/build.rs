//! Generates the protocol code with protox, a pure-Rust protobuf compiler: no
//! system `protoc` is needed.

use std::path::PathBuf;

fn generate(protos: &[&str], out_subdir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto");
    let descriptors = protox::compile(protos.iter().map(|p| root.join(p)), [&root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?).join(out_subdir);
    std::fs::create_dir_all(&out_dir)?;
    tonic_prost_build::configure()
        // Every `bytes` field is a refcounted `bytes::Bytes`: stored block
        // bytes go out to many subscribers without a copy per subscriber.
        .bytes(".")
        // Exact-size encode buffers (see `src/codec.rs`).
        .codec_path("crate::codec::ExactCodec")
        .out_dir(&out_dir)
        .compile_fds(descriptors)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    generate(
        &["dagstream/v1/streaming.proto", "dagstream/v1/archive.proto"],
        "v1",
    )?;
    generate(&["design/observer_streaming.proto"], "design")?;
    Ok(())
}
