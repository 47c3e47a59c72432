//! `--user USER[:GROUP]`: the unprivileged identity the server runs as once
//! every listener is bound and every worker (and io_uring ring) is set up.
//!
//! [`resolve`] looks the names (or numeric ids) up before anything is bound,
//! so an unknown user stops the start-up at once. [`Target::drop_to`] then
//! sets the supplementary groups to the target group alone, then the group
//! id, then the user id, in that order (once the user id is not 0, the
//! group calls would be refused), and checks that root cannot be regained.
//! glibc applies each of these calls to every thread of the process, so the
//! threads already running (signals, reload, the workers waiting to serve)
//! change identity too.

use std::fmt;
use std::str::FromStr;

use nix::errno::Errno;
use nix::unistd::{self, Gid, Group, Uid, User};

/// `--user USER[:GROUP]` as given: names or numeric ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// The user name or uid.
    pub user: String,
    /// The group name or gid; the user's primary group when absent.
    pub group: Option<String>,
}

impl FromStr for UserSpec {
    type Err = String;

    /// Parses `USER` or `USER:GROUP` (clap shows the message as a usage error).
    fn from_str(s: &str) -> Result<UserSpec, String> {
        let (user, group) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        };
        if user.is_empty() || group.is_some_and(str::is_empty) {
            return Err("expected USER or USER:GROUP (names or numeric ids)".into());
        }
        Ok(UserSpec {
            user: user.to_string(),
            group: group.map(str::to_string),
        })
    }
}

impl fmt::Display for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.user)?;
        if let Some(g) = &self.group {
            write!(f, ":{g}")?;
        }
        Ok(())
    }
}

/// The identity to switch to, looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What `--user` said, for messages.
    pub spec: UserSpec,
    /// The user id.
    pub uid: Uid,
    /// The group id (also the only supplementary group).
    pub gid: Gid,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (uid {}, gid {})", self.spec, self.uid, self.gid)
    }
}

/// Why `--user` cannot be honoured.
#[derive(Debug)]
#[non_exhaustive]
pub enum PrivilegeError {
    /// No such user in the user database.
    UnknownUser(String),
    /// No such group in the group database.
    UnknownGroup(String),
    /// A numeric uid without a user database entry and without `:GROUP`.
    NoGroupFor(String),
    /// The user or group database could not be read.
    Lookup {
        /// The name looked up.
        name: String,
        /// The error.
        error: Errno,
    },
    /// `setgroups`, `setgid` or `setuid` failed.
    Drop {
        /// Which call.
        call: &'static str,
        /// The error.
        error: Errno,
    },
    /// After the drop, the process still has (or could regain) an id it
    /// should not.
    NotDropped(String),
}

impl fmt::Display for PrivilegeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivilegeError::UnknownUser(u) => write!(f, "--user: no such user: {u}"),
            PrivilegeError::UnknownGroup(g) => write!(f, "--user: no such group: {g}"),
            PrivilegeError::NoGroupFor(u) => write!(
                f,
                "--user {u}: uid {u} has no entry in the user database, so it has no primary \
                 group: give one, e.g. --user {u}:{u}"
            ),
            PrivilegeError::Lookup { name, error } => {
                write!(f, "--user: cannot look up {name}: {error}")
            }
            PrivilegeError::Drop { call, error } => write!(
                f,
                "--user: {call} failed: {error} (changing identity needs root or \
                 CAP_SETUID/CAP_SETGID)"
            ),
            PrivilegeError::NotDropped(why) => write!(f, "--user: privileges not dropped: {why}"),
        }
    }
}

impl std::error::Error for PrivilegeError {}

/// Looks `spec` up: names in the user and group databases, numbers as ids.
pub fn resolve(spec: &UserSpec) -> Result<Target, PrivilegeError> {
    let lookup = |name: &str| {
        let name = name.to_string();
        move |error| PrivilegeError::Lookup { name, error }
    };
    let (uid, primary) = match spec.user.parse::<u32>() {
        Ok(n) => {
            let uid = Uid::from_raw(n);
            let entry = User::from_uid(uid).map_err(lookup(&spec.user))?;
            (uid, entry.map(|u| u.gid))
        }
        Err(_) => match User::from_name(&spec.user).map_err(lookup(&spec.user))? {
            Some(u) => (u.uid, Some(u.gid)),
            None => return Err(PrivilegeError::UnknownUser(spec.user.clone())),
        },
    };
    let gid = match &spec.group {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => match Group::from_name(g).map_err(lookup(g))? {
                Some(group) => group.gid,
                None => return Err(PrivilegeError::UnknownGroup(g.clone())),
            },
        },
        None => primary.ok_or_else(|| PrivilegeError::NoGroupFor(spec.user.clone()))?,
    };
    Ok(Target {
        spec: spec.clone(),
        uid,
        gid,
    })
}

impl Target {
    /// Switches the whole process to this identity: supplementary groups,
    /// then gid, then uid; then checks every id and that `setuid(0)` fails.
    pub fn drop_to(&self) -> Result<(), PrivilegeError> {
        let call = |call| move |error| PrivilegeError::Drop { call, error };
        unistd::setgroups(&[self.gid]).map_err(call("setgroups"))?;
        unistd::setgid(self.gid).map_err(call("setgid"))?;
        unistd::setuid(self.uid).map_err(call("setuid"))?;
        let ids = (
            unistd::getuid(),
            unistd::geteuid(),
            unistd::getgid(),
            unistd::getegid(),
        );
        if ids != (self.uid, self.uid, self.gid, self.gid) {
            return Err(PrivilegeError::NotDropped(format!(
                "uid {}/{} gid {}/{} after the switch",
                ids.0, ids.1, ids.2, ids.3
            )));
        }
        let groups = unistd::getgroups().map_err(call("getgroups"))?;
        if groups.iter().any(|&g| g != self.gid) {
            return Err(PrivilegeError::NotDropped(format!(
                "supplementary groups {groups:?} remain"
            )));
        }
        if !self.uid.is_root() && unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(PrivilegeError::NotDropped(
                "setuid(0) still succeeds".into(),
            ));
        }
        Ok(())
    }
}

/// The start-up warning for a server running as root without `--user`.
pub fn root_warning() -> Option<String> {
    unistd::geteuid().is_root().then(|| {
        "running as root: once the sockets are bound the server needs no privilege; \
         use --user (e.g. --user nobody) or start it as an unprivileged user"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_specs_parse() {
        let s: UserSpec = "nobody".parse().expect("a user");
        assert_eq!((s.user.as_str(), s.group), ("nobody", None));
        let s: UserSpec = "1000:2000".parse().expect("ids");
        assert_eq!(s.group.as_deref(), Some("2000"));
        assert_eq!(s.to_string(), "1000:2000");
        for bad in ["", ":x", "x:", ":"] {
            assert!(bad.parse::<UserSpec>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_and_ids_resolve() {
        let root = resolve(&"root".parse().expect("spec")).expect("root exists");
        assert_eq!((root.uid.as_raw(), root.gid.as_raw()), (0, 0));
        let ids = resolve(&"0:12345".parse().expect("spec")).expect("numeric group");
        assert_eq!(ids.gid.as_raw(), 12345);
        let e = resolve(&"no-such-user-flashpolicyd".parse().expect("spec")).expect_err("unknown");
        assert!(e.to_string().contains("no such user"), "{e}");
        let e = resolve(&"root:no-such-group-flashpolicyd".parse().expect("spec"))
            .expect_err("unknown");
        assert!(e.to_string().contains("no such group"), "{e}");
        let e = resolve(&"4000000001".parse().expect("spec")).expect_err("no group");
        assert!(e.to_string().contains("give one"), "{e}");
    }
}
