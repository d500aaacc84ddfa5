//! Link options of the `pylon` binary in release builds.
//!
//! - The code is laid out in the order a training run executed it (`link/pylon.order`, written by
//!   `scripts/order-text`; LLD's `--symbol-ordering-file`): what runs at start and per request sits
//!   together at the start of the code instead of spread over its 22 MB. The kernel maps a binary's
//!   code 64 KB around each page first run, so spread code is resident almost whole: an idle Pylon
//!   held 15 MB of its code in memory, laid out it holds under 4 MB.
//! - Relative relocations are packed (`-z pack-relative-relocs`, DT_RELR, glibc 2.36 and later):
//!   the loader reads a few kilobytes instead of 1.2 MB of `.rela.dyn` at every start.
//!
//! Both are LLD options; LLD is Rust's default linker on x86_64-unknown-linux-gnu since 1.90
//! (<https://blog.rust-lang.org/2025/09/01/rust-lld-on-1.90.0-stable/>). Older compilers, other
//! targets, or `PYLON_LINK_LAYOUT=default` (another linker configured) link as before.
//!
//! Rust symbol names carry a hash of the compiler version: the file's first line names the `rustc`
//! that wrote it, and another compiler gets a warning that only the C code (OpenSSL, jemalloc) is
//! laid out. Symbols the file names but the build does not have are skipped, so a stale file only
//! lays out less.

use std::env;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=link/pylon.order");
    println!("cargo::rerun-if-env-changed=PYLON_LINK_LAYOUT");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    let wanted = !env::var("PYLON_LINK_LAYOUT").is_ok_and(|v| v == "default");
    if !(release && target && wanted) {
        return;
    }
    let rustc = rustc_version().unwrap_or_default();
    let minor = rustc.split(['.', ' ']).nth(2).and_then(|m| m.parse::<u32>().ok());
    if minor.is_none_or(|m| m < 90) {
        return; // GNU ld, which has no `--symbol-ordering-file`
    }
    let order = format!("{}/link/pylon.order", env!("CARGO_MANIFEST_DIR"));
    let written_by = std::fs::read_to_string(&order)
        .ok()
        .and_then(|text| text.lines().next().map(|l| l.trim_start_matches("# ").to_string()));
    if written_by.as_deref() != Some(rustc.trim()) {
        println!(
            "cargo::warning=link/pylon.order was written by {}, this build is {}: Rust functions keep the default layout (run scripts/order-text)",
            written_by.as_deref().unwrap_or("an unknown rustc"),
            rustc.trim()
        );
    }
    for arg in [
        format!("-Wl,--symbol-ordering-file={order}"),
        "-Wl,--no-warn-symbol-ordering".to_string(),
        "-Wl,-z,pack-relative-relocs".to_string(),
    ] {
        println!("cargo::rustc-link-arg-bin=pylon={arg}");
    }
}

/// `rustc 1.95.0 (59807616e 2026-04-14)`: the compiler Cargo builds with.
fn rustc_version() -> Option<String> {
    let out = Command::new(env::var_os("RUSTC")?).arg("--version").output().ok()?;
    String::from_utf8(out.stdout).ok()
}
