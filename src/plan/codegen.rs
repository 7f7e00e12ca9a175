//! Link options that steer ThinLTO code generation. In-process, ld.lld
//! applies them to every backend; distributed, each backend is a clang
//! command, so they are translated to clang spellings here. An option with
//! no faithful translation makes the link pass through (in-process).

use std::ffi::OsString;

use crate::args::{ArgKind, CommandLine, OptId};

/// `--lto-*` options that only shape the thin-link (the index), which runs
/// with the link's own options anyway: nothing to do for the backends.
const THIN_LINK_ONLY: &[&str] = &[
    "lto-whole-program-visibility",
    "lto-validate-all-vtables-have-type-infos",
    "lto-known-safe-vtables",
    "lto-unified-lto",
    "lto-pgo-warn-mismatch",
    "lto-basic-block-address-map",
];

pub fn backend_options(cl: &CommandLine) -> Result<Vec<OsString>, String> {
    let mut out: Vec<OsString> = Vec::new();
    for a in &cl.args {
        let ArgKind::Opt { id, value } = &a.kind else { continue };
        let value = value.as_deref().map(|v| v.to_string_lossy().into_owned()).unwrap_or_default();
        match id {
            OptId::Mllvm => out.extend(["-mllvm".into(), value.into()]),
            OptId::LtoOptLevel => out.push(format!("-O{value}").into()),
            OptId::PluginOpt => plugin_opt(&value, &mut out)?,
            OptId::LtoOther => {
                let spelled = a.tokens[0].to_string_lossy();
                let name = spelled.trim_start_matches('-');
                let name = name.split('=').next().unwrap_or(name);
                if !THIN_LINK_ONLY.contains(&name) {
                    return Err(format!("--{name} has no per-backend equivalent"));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// gold-plugin style options (`-plugin-opt=...`), as ld.lld reads them.
fn plugin_opt(v: &str, out: &mut Vec<OsString>) -> Result<(), String> {
    if let Some(llvm) = v.strip_prefix('-') {
        out.extend(["-mllvm".into(), format!("-{llvm}").into()]);
    } else if let Some(level) = v.strip_prefix('O') {
        out.push(format!("-O{level}").into());
    } else if let Some(cpu) = v.strip_prefix("mcpu=") {
        out.push(format!("-mcpu={cpu}").into());
    } else if v.starts_with("thinlto") || v.starts_with("jobs=") || v.starts_with("cache-") {
        // Thin-link and in-process scheduling knobs: meaningless for a
        // backend. (thinlto-index-only is refused before we get here.)
    } else {
        return Err(format!("-plugin-opt={v} has no per-backend equivalent"));
    }
    Ok(())
}
