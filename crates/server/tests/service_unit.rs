//! contrib/flashpolicyd.service and contrib/flashpolicyd.socket: the
//! directives operators rely on are there, nothing blocks io_uring, and
//! (where `systemd-analyze` is installed) systemd parses every line of both
//! without a complaint.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_flashpolicyd");
const INSTALLED_BIN: &str = "/usr/local/bin/flashpolicyd";

fn unit_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contrib/flashpolicyd.service")
}

fn unit() -> String {
    std::fs::read_to_string(unit_path()).expect("contrib/flashpolicyd.service")
}

fn socket_unit() -> String {
    std::fs::read_to_string(unit_path().with_extension("socket"))
        .expect("contrib/flashpolicyd.socket")
}

/// The values of `key=` lines, comments skipped.
fn values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .collect()
}

fn one<'a>(unit: &'a str, key: &str) -> &'a str {
    match values(unit, key).as_slice() {
        [v] => v,
        other => panic!("{key}= should be set once, found {other:?}"),
    }
}

#[test]
fn the_unit_has_what_operators_rely_on() {
    let unit = unit();
    assert_eq!(
        one(&unit, "ExecStart"),
        format!("{INSTALLED_BIN} --policy /etc/flashpolicyd/policy.xml")
    );
    assert_eq!(one(&unit, "ExecReload"), "/bin/kill -HUP $MAINPID");
    // READY=1, RELOADING=1, STOPPING=1 and the watchdog pings.
    assert_eq!(one(&unit, "Type"), "notify");
    let watchdog = humantime::parse_duration(one(&unit, "WatchdogSec")).expect("a duration");
    assert!(
        watchdog >= Duration::from_secs(10),
        "WatchdogSec {watchdog:?}"
    );
    assert_eq!(one(&unit, "KillSignal"), "SIGTERM");
    assert_eq!(one(&unit, "Restart"), "on-failure");
    assert_eq!(one(&unit, "LimitNOFILE"), "1048576");
    assert_eq!(one(&unit, "DynamicUser"), "yes");
    assert_eq!(one(&unit, "AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one(&unit, "CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
    assert_eq!(
        one(&unit, "RestrictAddressFamilies"),
        "AF_INET AF_INET6 AF_UNIX"
    );
    for key in [
        "NoNewPrivileges",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectHome",
        "MemoryDenyWriteExecute",
        "LockPersonality",
        "RestrictNamespaces",
        "RestrictRealtime",
    ] {
        assert_eq!(one(&unit, key), "yes", "{key}");
    }
    assert_eq!(one(&unit, "ProtectSystem"), "strict");
    assert_eq!(one(&unit, "SystemCallArchitectures"), "native");
    // io_uring_setup/enter/register must not be filtered out.
    assert!(
        values(&unit, "SystemCallFilter").is_empty(),
        "a SystemCallFilter can block io_uring"
    );
    // The drain after SIGTERM lasts up to --timeout (5 s by default).
    let stop = humantime::parse_duration(one(&unit, "TimeoutStopSec")).expect("a duration");
    assert!(stop > Duration::from_secs(5), "TimeoutStopSec {stop:?}");
}

#[test]
fn the_socket_unit_passes_port_843() {
    let unit = socket_unit();
    assert_eq!(one(&unit, "ListenStream"), "843");
    assert_eq!(one(&unit, "BindIPv6Only"), "both");
    assert_eq!(one(&unit, "WantedBy"), "sockets.target");
    // The server's --backlog does not reach a passed socket.
    assert!(one(&unit, "Backlog").parse::<u32>().is_ok_and(|b| b >= 128));
}

#[test]
fn systemd_parses_the_unit_without_a_warning() {
    let version = Command::new("systemd-analyze").arg("--version").output();
    if !version.is_ok_and(|o| o.status.success()) {
        if std::env::var_os("FLASHPOLICYD_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
            panic!("FLASHPOLICYD_REQUIRE_TOOLS=1 but systemd-analyze is not installed");
        }
        eprintln!("skipped: systemd-analyze is not installed here");
        return;
    }
    // The same unit, pointing at the binary just built (verify checks that
    // ExecStart's program exists).
    let dir = std::env::temp_dir().join(format!("flashpolicyd-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let copy = dir.join("flashpolicyd.service");
    std::fs::write(&copy, unit().replace(INSTALLED_BIN, BIN)).expect("write unit");
    let socket = dir.join("flashpolicyd.socket");
    std::fs::write(&socket, socket_unit()).expect("write socket unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&socket)
        .arg(&copy)
        .output()
        .expect("systemd-analyze verify");
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Unknown keys and bad values are only warnings (exit 0): refuse them too.
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify: {}\n{text}",
        out.status
    );
}
