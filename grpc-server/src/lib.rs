//! intentkit's gRPC façade (`intentkit.v1`) for Go and Java backends, and the HTTP receiver
//! that providers call.
//!
//! Not built yet: this crate is filled by the gRPC issue. It will convert and delegate to
//! `intentkit-core`, holding no business rules of its own.
