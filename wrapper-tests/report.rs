//! KDTHIN_REPORT and KDTHIN_TRACE from real links, read back by `kdthin
//! report`.

use std::ffi::OsStr;
use std::process::Command;

use crate::support::*;

#[test]
fn report_and_trace_describe_the_links() {
    require_toolchain!();
    let t = Tree::build(CmdFormat::Savedcmd, Linker::Lld);
    let report = t.scratch().join("report.jsonl");
    let traces = t.scratch().join("traces");
    std::fs::create_dir_all(&traces).unwrap();
    for target in ["vmlinux.o", "mod/foo.o"] {
        t.remove(target);
        t.link(target, Linker::Kdthin, &[("KDTHIN_REPORT", report.as_os_str()), ("KDTHIN_TRACE", traces.as_os_str())])
            .ok();
    }

    // One JSON line per distributed link, with what the LTO line said.
    let text = std::fs::read_to_string(&report).unwrap();
    let links: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(links.len(), 2, "{text}");
    let vm = &links[0];
    assert_eq!(vm["output"], "vmlinux.o");
    assert_eq!(vm["exit_code"], 0);
    assert_eq!(vm["compiled"], vm["used_modules"], "cold link, cache off: every used module compiled");
    assert!(vm["slowest_backends"].as_array().is_some_and(|b| !b.is_empty()), "{vm}");
    assert!(vm["times"]["total"].as_f64().unwrap() > 0.0);
    assert_eq!(links[1]["output"], "mod/foo.o");

    // One Chrome trace per link: a span per backend plus the link phases.
    let files: Vec<_> = std::fs::read_dir(&traces).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 2, "{files:?}");
    let vm_trace = files.iter().find(|p| p.file_name().unwrap().to_string_lossy().starts_with("vmlinux.o.")).unwrap();
    let trace: serde_json::Value = serde_json::from_slice(&std::fs::read(vm_trace).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let backends = events.iter().filter(|e| e["cat"] == "backend" && e["ph"] == "X").count();
    assert_eq!(backends as u64, vm["compiled"].as_u64().unwrap());
    for phase in ["thin-link", "final link"] {
        assert!(events.iter().any(|e| e["name"] == phase && e["ph"] == "X"), "no {phase} span");
    }

    // `kdthin report` summarises both kinds of file for people.
    for file in [report.as_os_str(), vm_trace.as_os_str()] {
        let out = run(Command::new(env!("CARGO_BIN_EXE_kdthin")).args([OsStr::new("report"), file])).ok();
        assert!(out.stdout.contains("slowest backends") && out.stdout.contains("vmlinux.o"), "{}", out.stdout);
    }
}
