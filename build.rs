//! Link options of the `chunkwire` binary. On Linux with glibc it is linked with packed
//! relative relocations (`-z pack-relative-relocs`, DT_RELR: glibc 2.36 and binutils 2.38
//! or lld have them). The loader then reads a few KB of relocations at start-up instead of
//! 300 KB, which is a quarter of a MiB of the CLI's peak resident memory (README
//! "Benchmark"). `CHUNKWIRE_RELR=off` leaves it out, for a toolchain or a C library without
//! it. The library and the tests are untouched.

fn main() {
    println!("cargo:rerun-if-env-changed=CHUNKWIRE_RELR");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let off = std::env::var("CHUNKWIRE_RELR").is_ok_and(|v| v == "off");
    if os == "linux" && env == "gnu" && !off {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
