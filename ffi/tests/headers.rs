//! The committed headers are what the code generates: `bindings/c/intentkit.h`, and the
//! flattened `bindings/php/intentkit.php.h` for PHP's `FFI::cdef` (which reads no preprocessor
//! lines). `INTENTKIT_BLESS=1` rewrites them.
#![cfg(feature = "headers")]

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The C header with its `#include` and `#define` lines dropped, run through the C
/// preprocessor for its `#ifdef __cplusplus` branches, with PHP's two FFI defines on top.
fn flatten(c_header: &str) -> String {
    let without: String = c_header
        .lines()
        .filter(|l| {
            !l.trim_start().starts_with("#include")
                && !l.trim_start().starts_with("#define INTENTKIT_")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let mut cpp = Command::new("cpp")
        .args(["-P", "-nostdinc", "-undef", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cpp (from gcc) must be installed");
    std::io::Write::write_all(&mut cpp.stdin.take().unwrap(), without.as_bytes()).unwrap();
    let out = cpp.wait_with_output().unwrap();
    assert!(out.status.success(), "cpp failed");
    let body: String = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    format!(
        "#define FFI_SCOPE \"INTENTKIT\"\n#define FFI_LIB \"libintentkit.so\"\n\
         /* GENERATED from bindings/c/intentkit.h by ffi/tests/headers.rs; do not edit. */\n{body}"
    )
}

fn check(path: PathBuf, generated: &str) {
    if std::env::var_os("INTENTKIT_BLESS").is_some() {
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} differs from what the code generates; run \
         `INTENTKIT_BLESS=1 cargo test -p intentkit-ffi --features headers --test headers` \
         and commit the result",
        path.display()
    );
}

#[test]
fn generate_headers() {
    let mut c = Vec::new();
    intentkit::write_header(&mut c).unwrap();
    let c = String::from_utf8(c).unwrap();
    let php = flatten(&c);
    check(root().join("bindings/c/intentkit.h"), &c);
    check(root().join("bindings/php/intentkit.php.h"), &php);
}
