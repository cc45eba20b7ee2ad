//! intentkit's C ABI (`libintentkit`), for C/C++ and PHP FFI hosts.
//!
//! Not built yet: this crate is filled by the C ABI issue. It will translate only (JSON in the
//! `intentkit.v1` canonical mapping in and out, one status enum, no panics across the
//! boundary); every rule stays in `intentkit-core`.
