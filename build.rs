//! Generates the server side of flagd's gRPC protocols (proto/) when the
//! `server` feature is on; the library alone needs nothing generated.

fn main() {
    #[cfg(feature = "server")]
    {
        let protos = [
            "proto/flagd/sync/v1/sync.proto",
            "proto/flagd/evaluation/v1/evaluation.proto",
            "proto/flagd/evaluation/v2/evaluation.proto",
        ];
        for proto in protos {
            println!("cargo:rerun-if-changed={proto}");
        }
        // Clients too: tests, and Rust programs, may call cfgd's gRPC.
        tonic_prost_build::configure()
            .compile_protos(&protos, &["proto"])
            .unwrap_or_else(|e| panic!("compiling flagd's protos (needs protoc): {e}"));
    }
}
