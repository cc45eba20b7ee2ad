//! Compiles `intentkit/v1/*.proto` without a system protoc: protox parses the files into a
//! descriptor set, tonic-prost-build generates the messages (and, with the `grpc` feature, the
//! service), and pbjson-build generates their canonical proto3 JSON mapping.

use std::path::PathBuf;

use protox::prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["intentkit/v1/intent.proto", "intentkit/v1/service.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::Compiler::new(["."])?
        .include_imports(true)
        .include_source_info(true)
        .open_files(files)?
        .file_descriptor_set();
    let bytes = fds.encode_to_vec();
    // Served by gRPC reflection.
    std::fs::write(out.join("intentkit_descriptor.bin"), &bytes)?;

    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;

    // Every field is written, with its default when unset (protojson's EmitUnpopulated): an
    // empty page is `"events":[]`, not a missing key, so JSON hosts need no special case.
    // Unset message fields stay absent.
    pbjson_build::Builder::new()
        .register_descriptors(&bytes)?
        .emit_fields()
        .extern_path(".google.protobuf", "::pbjson_types")
        .build(&[".intentkit.v1"])?;
    Ok(())
}
