//! What a distribution or a platform team packages: shell completions and the man page
//! generated from the command line, the hardened systemd unit, the license and the crate
//! metadata.

mod support;

use std::path::Path;
use std::process::Command;

use support::exporter::binary;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const UNIT: &str = "deploy/tikv-health-exporter.service";

fn stdout_of(args: &[&str]) -> String {
    let out = Command::new(binary()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_cover_the_current_flags_for_every_shell() {
    let bash = stdout_of(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("tikv-health-exporter.bash");
    std::fs::write(&script, &bash).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    // Sourced, it registers the completion function for the command.
    let registered = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p tikv-health-exporter",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&registered.stdout).contains("tikv-health-exporter"),
        "{registered:?}"
    );
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let text = stdout_of(&["completions", shell]);
        for flag in ["pd.endpoints", "logs.docker.container", "log.format"] {
            assert!(text.contains(flag), "{shell} completion lacks {flag}");
        }
        // Deprecated spellings are accepted, not offered.
        assert!(!text.contains("log.docker.container"), "{shell}");
        assert!(text.contains("check-config"), "{shell}: subcommands");
    }
}

#[test]
fn man_page_renders_without_warnings_and_names_the_environment() {
    let page = stdout_of(&["man"]);
    assert!(
        page.lines()
            .any(|l| l.starts_with(".TH tikv-health-exporter 1")),
        "{page}"
    );
    for needle in [
        "TIKV_HEALTH_EXPORTER_PD_ENDPOINTS",
        "TIKV_HEALTH_EXPORTER_LOG_LEVEL",
        "logs.docker.from\\-start",
        "check\\-config",
    ] {
        assert!(page.contains(needle), "{needle} in the man page");
    }
    // groff with every warning enabled, as `man` renders it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tikv-health-exporter.1");
    std::fs::write(&file, &page).unwrap();
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&file)
        .output()
        .expect("groff (package groff-base) renders man pages");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "groff warnings");
}

/// The unit's `Key=value` lines (continuations joined).
fn directives(unit: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut cur = String::new();
    for line in unit.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => cur.push_str(part),
            None => {
                cur.push_str(line);
                joined.push(std::mem::take(&mut cur));
            }
        }
    }
    joined
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn systemd_unit_is_hardened_and_runs_the_command_line_it_names() {
    let path = Path::new(ROOT).join(UNIT);
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        // Exposure 0-10 is shown, 0-100 compared: fail above 2.0 (the unit scores 1.5, "OK").
        .arg("--threshold=20")
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd)");
    let text = String::from_utf8_lossy(&out.stdout);
    let verdict = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{text}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{verdict}");
    assert!(
        verdict.contains(" OK") || verdict.contains(" SAFE"),
        "{verdict}"
    );

    let unit = std::fs::read_to_string(&path).unwrap();
    let d = directives(&unit);
    let get = |k: &str| {
        d.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{k}= in {UNIT}"))
    };
    // Reload is SIGHUP, which the exporter handles; stop is SIGTERM (the default).
    assert_eq!(get("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert!(!d.iter().any(|(k, _)| k == "KillSignal"));
    assert_eq!(get("StateDirectory"), "tikv-health-exporter");
    // Every flag of ExecStart is one the exporter has (not a deprecated spelling).
    let help = stdout_of(&["--help"]);
    let exec = get("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/tikv-health-exporter"));
    for w in words {
        let flag = w.split('=').next().unwrap();
        assert!(
            flag.starts_with("--") && help.contains(&format!("{flag} <")),
            "{flag}"
        );
        if flag == "--state-file" {
            assert!(w.starts_with("--state-file=/var/lib/tikv-health-exporter/"));
        }
    }
}

#[test]
fn license_and_crate_metadata() {
    let license = std::fs::read_to_string(Path::new(ROOT).join("LICENSE")).unwrap();
    assert!(
        license.contains("Apache License\n                           Version 2.0, January 2004")
    );
    assert!(license.contains("APPENDIX: How to apply the Apache License to your work."));
    assert_eq!(env!("CARGO_PKG_LICENSE"), "Apache-2.0");
    assert!(!env!("CARGO_PKG_DESCRIPTION").is_empty());
    assert!(env!("CARGO_PKG_REPOSITORY").starts_with("https://github.com/"));
    assert!(env!("CARGO_PKG_RUST_VERSION").starts_with("1."));
}
