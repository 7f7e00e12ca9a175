//! Builds the fork server's shim (forkserver/shim.c, see
//! src/exec/forkserver/mod.rs): a shared library that kdthin-ld preloads into
//! a compiler. C compiled here rather than a Rust cdylib: the package's one
//! library is the rlib the programs use, so a cdylib would be a second
//! workspace package, which neither `cargo build` at the top nor the tests
//! that need the shim would build; and the shim is libc calls only (fork,
//! SCM_RIGHTS, `environ`, `__libc_start_main`), which C says directly.
//!
//! The `cc` crate (already a build dependency of ring) picks the C
//! compiler as it does for ring (CC, CC_<target>, cross targets); we link
//! the object as a shared library ourselves, which `cc` does not do.
//!
//! The result is copied next to the binaries (target/<profile>/), where
//! kdthin-ld looks when it runs from a build tree; `make install` puts it
//! in <prefix>/lib/kdthin-ld/, where an installed kdthin-ld looks.

use std::path::{Path, PathBuf};

const SHIM: &str = "libkdthin-forkserver.so";

fn main() {
    println!("cargo:rerun-if-changed=forkserver/shim.c");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let so = out.join(SHIM);
    let compiler = cc::Build::new().pic(true).opt_level(2).warnings(true).get_compiler();
    let mut cmd = compiler.to_command();
    // Hardened as Debian builds shared libraries (lintian checks the .deb).
    cmd.args(["-shared", "-Wall", "-Wextra", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong"])
        .args(["-Wl,-z,relro,-z,now", "-o"])
        .arg(&so)
        .arg("forkserver/shim.c")
        .arg("-ldl");
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run the C compiler ({cmd:?}): {e}"));
    assert!(status.success(), "building {SHIM} failed: {cmd:?}");
    // OUT_DIR is <target>/[<triple>/]<profile>/build/<package>-<hash>/out.
    let profile_dir = out.ancestors().nth(3).filter(|_| out.ancestors().nth(2).is_some_and(is_build_dir));
    match profile_dir {
        Some(dir) => install(&so, &dir.join(SHIM)),
        None => println!("cargo:warning=unexpected OUT_DIR {}: {SHIM} not copied", out.display()),
    }
}

fn is_build_dir(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "build")
}

/// Copies through a temporary name: a kdthin-ld running meanwhile never
/// preloads a half-written library.
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("so.tmp");
    std::fs::copy(from, &tmp).unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), tmp.display()));
    std::fs::rename(&tmp, to).unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), to.display()));
}
