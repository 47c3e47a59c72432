//! A child started in a process group of its own, the whole group killed
//! (and the child reaped) when dropped: websockify forks a handler per
//! connection and Chromium runs as node's child, and neither may outlive
//! the test.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A running process group, led by `child`.
pub struct Group {
    child: Child,
    pgid: libc::pid_t,
    /// Whether `wait_for` has killed the group and reaped the leader.
    reaped: bool,
}

impl Group {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> io::Result<Group> {
        let child = cmd.process_group(0).spawn()?;
        let pgid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
        Ok(Group {
            child,
            pgid,
            reaped: false,
        })
    }

    /// The leader, for its pipes.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Waits for the leader to exit, then kills what is left of its group;
    /// `None` after `timeout` (the group is then still running, and killed
    /// on drop).
    pub fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while !self.leader_exited() {
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The leader is a zombie, not reaped: its id still names the group.
        self.kill_group();
        self.reaped = true;
        self.child.wait().ok()
    }

    /// Whether the leader has exited, without reaping it (so that the group
    /// id stays ours).
    fn leader_exited(&self) -> bool {
        // SAFETY: siginfo_t is plain data, for which all zeroes is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t for the call; the
        // pid is our own unreaped child; WNOWAIT leaves it unreaped.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pgid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: waitid filled `info` (or left it zeroed: pid 0 = running).
        rc == 0 && unsafe { info.si_pid() } != 0
    }

    fn kill_group(&self) {
        // SAFETY: kill takes no pointers. The group id is the pid of our own
        // child, which is not reaped yet (only `wait_for` and `drop` reap it,
        // each after this call), so no other process can hold that id.
        unsafe {
            libc::kill(-self.pgid, libc::SIGKILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        self.kill_group();
        // SIGKILL cannot be caught, so this wait is short.
        let _ = self.child.wait();
    }
}
