//! `--check` prints every compatibility warning with its line and column;
//! `--check --strict` refuses such a policy (exit 2); a UTF-16 policy gets
//! its own error.

mod common;

use std::process::Command;

use common::*;

fn check(args: &[&str]) -> (Option<i32>, String, Vec<u8>) {
    let output = Command::new(BIN)
        .arg("--check")
        .args(args)
        .output()
        .expect("run flashpolicyd --check");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.stdout,
    )
}

const EVERYTHING: &[u8] = b"\xEF\xBB\xBF<?xml version=\"1.0\"?>\n<cross-domain-policy>\n  \
    <site-control permitted-cross-domain-policies=\"all\"/>\n  \
    <allow-access-from domain=\"*.example.com\" to-ports=\"443,8000-8100\"/>\n  \
    <allow-http-request-headers-from domain=\"*\" headers=\"*\"/>\n\
    </cross-domain-policy>\n";

#[test]
fn check_names_each_compatibility_warning_and_strict_refuses() {
    let file = TempFile::new("compat.xml", EVERYTHING);
    let path = file.path();
    // Nothing is bound by --check, so any address will do.
    let listen = ["--listen", "[::1]:9339"];
    let mut args = vec!["--policy", path];
    args.extend(listen);
    let (code, stderr, stdout) = check(&args);
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(!stdout.is_empty());
    for expected in [
        format!("{path}:1:1: the policy starts with a UTF-8 byte-order mark"),
        format!("{path}:2:1: no <allow-access-from domain=\"*\">: Unity Web Player"),
        format!("{path}:4:55: to-ports range 8000-8100: Lightspark grants only 8000"),
        format!("{path}:5:3: <allow-http-request-headers-from> applies only to HTTP"),
        format!("{path}:3:3: <site-control> in a policy served from port 9339"),
        "--listen: every listener is IPv6-only ([::1]:9339)".to_string(),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }

    args.push("--strict");
    let (code, stderr, stdout) = check(&args);
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("--strict: the policy draws 6 compatibility warning(s):"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{path}:4:55: to-ports range")),
        "{stderr}"
    );
}

#[test]
fn strict_passes_a_policy_every_client_takes() {
    let (code, stderr, _) = check(&[
        "--strict",
        "--listen",
        "127.0.0.1:843",
        "--allow",
        "*:843,9339",
    ]);
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    // The generated range warning comes back under --strict.
    let (code, stderr, _) = check(&["--strict", "--allow", "*:8000-8100"]);
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("--allow:1:"), "{stderr}");
}

#[test]
fn utf16_is_its_own_error() {
    let text = "<cross-domain-policy><allow-access-from domain=\"*\" to-ports=\"*\"/></cross-domain-policy>";
    let mut doc = vec![0xFF, 0xFE];
    doc.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    let file = TempFile::new("utf16.xml", &doc);
    let (code, stderr, _) = check(&["--policy", file.path()]);
    assert_eq!(code, Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("{}:1:1:", file.path()))
            && stderr.contains("encode the policy as UTF-8")
            && !stderr.contains("NUL"),
        "{stderr}"
    );
}
