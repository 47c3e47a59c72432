//! Why the io_uring engine cannot run here: what the start-up probe
//! found, one variant per check, each with the line the log shows.

use std::fmt;
use std::io;

use super::setup::FORCE_NO_URING_ENV;

/// Why io_uring is unavailable.
#[derive(Debug)]
#[non_exhaustive]
pub enum UringUnavailable {
    /// The test hook `FLASHPOLICYD_FORCE_NO_URING=1` is set.
    ForcedOff,
    /// `kernel.io_uring_disabled` is 2: io_uring is off for everyone.
    DisabledBySysctl,
    /// `io_uring_setup` refused to build a ring.
    Setup {
        /// What the kernel answered.
        error: io::Error,
        /// The usual cause of that answer, where one is known.
        hint: Option<SetupHint>,
    },
    /// The kernel lacks a ring feature the engine needs, e.g.
    /// `IORING_FEAT_NODROP (5.5)`.
    MissingFeature(&'static str),
    /// The kernel lacks an opcode the engine needs, e.g. `RECV`.
    MissingOpcode(&'static str),
    /// `IORING_REGISTER_PROBE` failed, so the opcodes cannot be checked.
    Probe(io::Error),
}

/// The usual cause of an `io_uring_setup` refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetupHint {
    /// EPERM with `kernel.io_uring_disabled=1`: only members of
    /// `io_uring_group` may build rings, and this user is not one.
    NotInIoUringGroup,
    /// EPERM or ENOSYS otherwise: a seccomp profile refuses the call.
    Seccomp,
}

impl UringUnavailable {
    /// A set-up refusal, with the hint its errno and the value of
    /// `kernel.io_uring_disabled` (`sysctl`, trimmed; empty if unreadable)
    /// point to.
    pub fn setup(error: io::Error, sysctl: &str) -> UringUnavailable {
        let hint = match error.raw_os_error() {
            Some(libc::EPERM) if sysctl == "1" => Some(SetupHint::NotInIoUringGroup),
            Some(libc::EPERM) | Some(libc::ENOSYS) => Some(SetupHint::Seccomp),
            _ => None,
        };
        UringUnavailable::Setup { error, hint }
    }
}

impl fmt::Display for UringUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UringUnavailable::ForcedOff => write!(f, "{FORCE_NO_URING_ENV}=1 is set"),
            UringUnavailable::DisabledBySysctl => {
                f.write_str("disabled by the kernel.io_uring_disabled sysctl (2)")
            }
            UringUnavailable::Setup { error, hint } => {
                write!(f, "io_uring_setup failed: {error}")?;
                match hint {
                    Some(hint) => write!(f, " ({hint})"),
                    None => Ok(()),
                }
            }
            UringUnavailable::MissingFeature(name) | UringUnavailable::MissingOpcode(name) => {
                write!(f, "the kernel lacks {name}")
            }
            UringUnavailable::Probe(error) => write!(f, "IORING_REGISTER_PROBE failed: {error}"),
        }
    }
}

impl fmt::Display for SetupHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SetupHint::NotInIoUringGroup => {
                "kernel.io_uring_disabled=1 and this user is not in io_uring_group"
            }
            SetupHint::Seccomp => "a seccomp profile, e.g. a container's, may refuse io_uring",
        })
    }
}

// The inner io::Error is part of the message (as the log has always shown
// it), so it is not also given as the source.
impl std::error::Error for UringUnavailable {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_the_log_has_always_shown_them() {
        let cases = [
            (
                UringUnavailable::ForcedOff,
                "FLASHPOLICYD_FORCE_NO_URING=1 is set",
            ),
            (
                UringUnavailable::DisabledBySysctl,
                "disabled by the kernel.io_uring_disabled sysctl (2)",
            ),
            (
                UringUnavailable::MissingFeature("IORING_FEAT_NODROP (5.5)"),
                "the kernel lacks IORING_FEAT_NODROP (5.5)",
            ),
            (
                UringUnavailable::MissingOpcode("RECV"),
                "the kernel lacks RECV",
            ),
        ];
        for (why, text) in cases {
            assert_eq!(why.to_string(), text);
        }
        let eperm = || io::Error::from_raw_os_error(libc::EPERM);
        let epermtext = eperm().to_string();
        assert_eq!(
            UringUnavailable::setup(eperm(), "1").to_string(),
            format!(
                "io_uring_setup failed: {epermtext} (kernel.io_uring_disabled=1 and this user \
                 is not in io_uring_group)"
            )
        );
        assert_eq!(
            UringUnavailable::setup(eperm(), "0").to_string(),
            format!(
                "io_uring_setup failed: {epermtext} (a seccomp profile, e.g. a container's, may \
                 refuse io_uring)"
            )
        );
        let enomem = io::Error::from_raw_os_error(libc::ENOMEM);
        let text = format!("io_uring_setup failed: {enomem}");
        assert_eq!(UringUnavailable::setup(enomem, "").to_string(), text);
        let probe = io::Error::from_raw_os_error(libc::EINVAL);
        let text = format!("IORING_REGISTER_PROBE failed: {probe}");
        assert_eq!(UringUnavailable::Probe(probe).to_string(), text);
    }
}
