//! Building a ring with the best flags the kernel accepts, and probing once
//! at start-up whether this engine can run here at all.

use std::io;

use io_uring::{opcode, IoUring, Probe};

use super::unavailable::UringUnavailable;

/// Environment variable that makes [`probe`] fail, to test the fallback.
pub(crate) const FORCE_NO_URING_ENV: &str = "FLASHPOLICYD_FORCE_NO_URING";

/// Environment variable that skips the first N ring set-up attempts (test
/// hook: 1 = COOP_TASKRUN, 2 = SUBMIT_ALL only, 3 = no flags).
pub(crate) const SETUP_ENV: &str = "FLASHPOLICYD_URING_SETUP";

/// Environment variable overriding the ring size, 1024 submission entries
/// (test hook: a tiny completion queue).
pub(crate) const ENTRIES_ENV: &str = "FLASHPOLICYD_URING_ENTRIES";

/// Submission queue entries per ring (the completion queue gets four times
/// as many).
const DEFAULT_ENTRIES: u32 = 1024;

/// The ring size: [`DEFAULT_ENTRIES`], or `FLASHPOLICYD_URING_ENTRIES`.
pub(crate) fn entries() -> u32 {
    std::env::var(ENTRIES_ENV)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|&n| n >= 2)
        .unwrap_or(DEFAULT_ENTRIES)
}

/// Applies one set of ring set-up flags.
type Setup = fn(&mut io_uring::Builder);

/// Builds a ring with the best flags the kernel accepts. Returns the ring
/// and a short description of the flags.
///
/// `SINGLE_ISSUER | DEFER_TASKRUN` (6.1+): task work runs only when we
/// enter the kernel to wait, in one batch. Where refused (`EINVAL`) we fall
/// back to `COOP_TASKRUN | TASKRUN_FLAG`, then to `SUBMIT_ALL` alone, then
/// to no flags. `SUBMIT_ALL` is added where known, so one bad entry does not
/// stop a batch.
pub(crate) fn build_ring(entries: u32) -> io::Result<(IoUring, &'static str)> {
    let cq = entries.saturating_mul(4);
    let attempts: [(&'static str, Setup); 4] = [
        ("single_issuer+defer_taskrun", |b| {
            b.setup_single_issuer()
                .setup_defer_taskrun()
                .setup_submit_all();
        }),
        ("coop_taskrun+taskrun_flag", |b| {
            b.setup_coop_taskrun()
                .setup_taskrun_flag()
                .setup_submit_all();
        }),
        ("submit_all", |b| {
            b.setup_submit_all();
        }),
        ("no setup flags", |_| {}),
    ];
    // Test hook: start at a later attempt, as if the kernel refused the
    // earlier ones, so the fallbacks get exercised on a new kernel too.
    let skip = std::env::var(SETUP_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(attempts.len() - 1);
    let mut last = io::Error::from_raw_os_error(libc::EINVAL);
    for (name, apply) in attempts.into_iter().skip(skip) {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(cq).setup_clamp();
        apply(&mut builder);
        match builder.build(entries) {
            Ok(ring) => return Ok((ring, name)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// The opcodes this engine needs. Multishot accept has no probe bit of its
/// own; `SOCKET` arrived in the same release (5.19), so its bit stands in
/// for it.
const REQUIRED_OPS: [(u8, &str); 9] = [
    (opcode::AcceptMulti::CODE, "ACCEPT"),
    (opcode::Socket::CODE, "multishot accept (5.19)"),
    (opcode::Recv::CODE, "RECV"),
    (opcode::Send::CODE, "SEND"),
    (opcode::Close::CODE, "CLOSE"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::PollAdd::CODE, "POLL_ADD"),
    (opcode::Timeout::CODE, "TIMEOUT"),
    (opcode::Nop::CODE, "NOP"),
];

/// What a ring offers, checked once per ring.
pub(super) struct Support {
    pub(super) flags: &'static str,
    pub(super) send_zc: bool,
}

pub(super) fn check_ring(ring: &IoUring, flags: &'static str) -> Result<Support, UringUnavailable> {
    let params = ring.params();
    if !params.is_feature_nodrop() {
        return Err(UringUnavailable::MissingFeature("IORING_FEAT_NODROP (5.5)"));
    }
    if !params.is_feature_ext_arg() {
        return Err(UringUnavailable::MissingFeature(
            "IORING_FEAT_EXT_ARG (5.11)",
        ));
    }
    if !params.is_feature_skip_cqe_on_success() {
        return Err(UringUnavailable::MissingFeature(
            "IORING_FEAT_CQE_SKIP (5.17)",
        ));
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(UringUnavailable::Probe)?;
    for (code, name) in REQUIRED_OPS {
        if !probe.is_supported(code) {
            return Err(UringUnavailable::MissingOpcode(name));
        }
    }
    Ok(Support {
        flags,
        send_zc: probe.is_supported(opcode::SendZc::CODE),
    })
}

/// Checks once whether this engine can run here: the test hook
/// `FLASHPOLICYD_FORCE_NO_URING=1`, the `kernel.io_uring_disabled` sysctl,
/// building a ring (seccomp profiles refuse `io_uring_setup` with EPERM or
/// ENOSYS), the features and the opcodes. Returns a line for the log.
pub(crate) fn probe(send_zc: bool) -> Result<String, UringUnavailable> {
    if std::env::var_os(FORCE_NO_URING_ENV).is_some_and(|v| v == "1") {
        return Err(UringUnavailable::ForcedOff);
    }
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if disabled == "2" {
        return Err(UringUnavailable::DisabledBySysctl);
    }
    let (ring, flags) = build_ring(8).map_err(|e| UringUnavailable::setup(e, &disabled))?;
    let support = check_ring(&ring, flags)?;
    let zc = match (send_zc, support.send_zc) {
        (true, true) => ", SEND_ZC",
        (true, false) => ", no SEND_ZC: --send-zc falls back to SEND",
        _ => "",
    };
    Ok(format!("io_uring available ({}{zc})", support.flags))
}
