//! Black-box tests of kdthin-ld: the built binary is `LD=` for a miniature
//! kbuild tree (kernel-fixtures/mini) and its results are compared with the
//! real ld.lld's in-process ThinLTO.
//!
//! Needs clang-22, ld.lld-22, llvm-ar-22, llvm-nm-22, llvm-objdump-22,
//! llvm-profdata-22 and make; without them each test says so and passes (KDTHIN_REQUIRE_TOOLS=1
//! makes that a failure). A failing test keeps its tree under
//! target/tmp/ and prints the path.

mod support;

mod bad_input;
mod cache;
mod codegen_options;
mod differential;
mod dtlto;
mod faults;
mod fixture;
mod forkserver;
mod installed_as_ld_lld;
mod passthrough;
mod private_dirs;
mod remote;
mod report;
mod savedir;
mod signals;
mod single_module;
mod tty;
