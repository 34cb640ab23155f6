//! Generates both sides of flagd's gRPC protocols (sync and evaluation)
//! from proto/: the server's, and clients for tests and Rust programs.

fn main() {
    let protos = [
        "proto/flagd/sync/v1/sync.proto",
        "proto/flagd/evaluation/v1/evaluation.proto",
        "proto/flagd/evaluation/v2/evaluation.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        .compile_protos(&protos, &["proto"])
        .unwrap_or_else(|e| panic!("compiling flagd's protos (needs protoc): {e}"));
}
