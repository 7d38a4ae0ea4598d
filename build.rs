//! Links the `chunkwire` binary with the functions an upload runs side by side, from the
//! list in `src/cli/link-order.txt` (made by `cargo run -p chunkwire-compare --release --
//! link-order`). Spread out, they keep about 1 MiB of code resident; packed, a few pages:
//! the difference between missing and meeting the benchmark's peak-memory target. The
//! library is not affected, and neither is any build whose linker may not be rust-lld:
//! the option (`--symbol-ordering-file`) is lld's.

use std::env;
use std::path::Path;
use std::process::Command;

const LIST: &str = "src/cli/link-order.txt";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={LIST}");
    println!("cargo:rerun-if-env-changed=CHUNKWIRE_LINK_ORDER");
    if env::var("CHUNKWIRE_LINK_ORDER").as_deref() == Ok("off")
        || env::var("CARGO_FEATURE_CLI").is_err()
        || env::var("PROFILE").as_deref() != Ok("release")
        || !linker_is_rust_lld()
    {
        return;
    }
    let list = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join(LIST);
    if !list.exists() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=chunkwire=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    // The list names symbols of one toolchain and lock file; others are skipped quietly.
    println!("cargo:rustc-link-arg-bin=chunkwire=-Wl,--no-warn-symbol-ordering");
}

/// True where rustc links with its bundled lld by default (x86_64 Linux GNU, since Rust
/// 1.90) and nothing here chose another linker.
fn linker_is_rust_lld() -> bool {
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
        || env::var_os("RUSTC_LINKER").is_some()
    {
        return false;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker") || flags.contains("link-self-contained") {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(output) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&output.stdout);
    let mut numbers = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
