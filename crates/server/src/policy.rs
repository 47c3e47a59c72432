//! The policy, from where it comes to the reply served.
//!
//! One pipeline for every policy: a document and the name its messages
//! carry, (name, bytes) → [`policy::validate`] → [`Reply`]. A `--policy
//! FILE` document is the file (read bounded), named by its path; an
//! `--allow` document is the policy the specs render to, named
//! `--allow`. Start-up ([`crate::config::Config::from_args`]) and every
//! SIGHUP reload ([`crate::reload`]) call [`PolicySource::load`], so a
//! reloaded policy gets exactly the checks the first one got.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use flashpolicy_proto::policy::{self, Policy, PolicyError, Rule, SpecError};
use flashpolicy_proto::reply::{Reply, ReplyError};

use crate::config::Listen;

mod listen;

use listen::{listen_advice, low_port_warning};

/// The name an `--allow` policy's messages carry in place of a file name.
pub const GENERATED: &str = "--allow";

/// Where the policy comes from, kept so that SIGHUP can load it again with
/// exactly the checks start-up used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// `--policy FILE`: read (bounded) and validated on every load.
    File(PathBuf),
    /// `--allow` specs, rendered on every load; none means the default
    /// policy, which allows every domain to connect to every port.
    Allow(Vec<String>),
}

/// A policy loaded and validated, ready to serve.
#[derive(Debug)]
pub struct LoadedPolicy {
    /// The reply every client gets.
    pub reply: Reply,
    /// One line describing the policy, for the log.
    pub summary: String,
    /// Warnings to log (already formatted with their source).
    pub warnings: Vec<String>,
    /// The compatibility warnings among them (a client that refuses or
    /// under-reads the policy: [`policy::Advice::is_compat`]): `--strict` makes
    /// them errors.
    pub compat: Vec<String>,
}

/// A policy that cannot be served.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// The policy file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The document breaks a rule.
    Policy {
        /// The document's name: the file's path, or [`GENERATED`].
        name: String,
        /// Where and which rule.
        error: PolicyError,
    },
    /// The document cannot be sent as a reply.
    Reply {
        /// The document's name: the file's path, or [`GENERATED`].
        name: String,
        /// Why.
        error: ReplyError,
    },
    /// An `--allow` argument is malformed.
    Allow {
        /// The argument.
        spec: String,
        /// Why.
        error: SpecError,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Read { path, error } => {
                write!(f, "{}: cannot read policy file: {error}", path.display())
            }
            LoadError::Policy { name, error } => {
                write!(f, "{name}:{}:{}: {}", error.line, error.column, error.rule)
            }
            LoadError::Reply { name, error } => write!(f, "{name}: {error}"),
            LoadError::Allow { spec, error } => write!(f, "--allow '{spec}': {error}"),
        }
    }
}

// Each message contains its inner error's, so none is also the source.
impl std::error::Error for LoadError {}

impl PolicySource {
    /// Reads (or renders), validates and builds the reply, with the warnings
    /// that apply when it is served on `listen`. Reading a file takes at
    /// most [`policy::MAX_POLICY_LEN`] + 1 bytes.
    pub fn load(&self, listen: &Listen) -> Result<LoadedPolicy, LoadError> {
        let (mut ready, summary) = match self {
            PolicySource::File(path) => {
                let document = read_policy(path).map_err(|error| LoadError::Read {
                    path: path.clone(),
                    error,
                })?;
                let ready = prepare(&path.display().to_string(), &document)
                    .map_err(|e| with_file_size(e, path))?;
                let summary = format!(
                    "{} ({} rules, {} bytes)",
                    path.display(),
                    ready.policy.allow.len(),
                    document.len()
                );
                (ready, summary)
            }
            PolicySource::Allow(specs) => {
                let mut warnings = Vec::new();
                if specs.is_empty() {
                    warnings.push(
                        "no --policy or --allow given: serving the default policy, which lets \
                         every domain connect to every port"
                            .to_string(),
                    );
                }
                let document = render_allow(specs)?;
                // The same checks as a file gets: the size refusal and warnings.
                let mut ready = prepare(GENERATED, document.as_bytes())?;
                warnings.append(&mut ready.warnings);
                ready.warnings = warnings;
                let summary = format!(
                    "generated ({} rules, {} bytes)",
                    ready.policy.allow.len(),
                    document.len()
                );
                (ready, summary)
            }
        };
        ready
            .warnings
            .extend(low_port_warning(listen, &ready.policy));
        let name = match self {
            PolicySource::File(path) => path.display().to_string(),
            PolicySource::Allow(_) => GENERATED.to_string(),
        };
        for (at, advice) in listen_advice(listen, ready.site_control_at) {
            let line = match at {
                Some((line, column)) => format!("{name}:{line}:{column}: {advice}"),
                None => format!("--listen: {advice}"),
            };
            ready.compat.push(line.clone());
            ready.warnings.push(line);
        }
        Ok(LoadedPolicy {
            reply: ready.reply,
            summary,
            warnings: ready.warnings,
            compat: ready.compat,
        })
    }
}

/// A document validated and made into a reply.
#[derive(Debug)]
struct Ready {
    policy: Policy,
    reply: Reply,
    /// The validator's warnings, each as `name:line:column: advice`.
    warnings: Vec<String>,
    /// The compatibility warnings among them.
    compat: Vec<String>,
    /// Where `<site-control>` is, if anywhere.
    site_control_at: Option<(u32, u32)>,
}

/// The pipeline every policy goes through: validates `document` (the
/// errors and warnings named `name`) and builds its reply.
fn prepare(name: &str, document: &[u8]) -> Result<Ready, LoadError> {
    let validated = policy::validate(document).map_err(|error| LoadError::Policy {
        name: name.to_string(),
        error,
    })?;
    let line = |w: &policy::Warning| format!("{name}:{}:{}: {}", w.line, w.column, w.rule);
    let warnings = validated.warnings.iter().map(line).collect();
    let compat = validated
        .warnings
        .iter()
        .filter(|w| w.rule.is_compat())
        .map(line)
        .collect();
    let reply = Reply::new(document).map_err(|error| LoadError::Reply {
        name: name.to_string(),
        error,
    })?;
    Ok(Ready {
        policy: validated.policy,
        reply,
        warnings,
        compat,
        site_control_at: validated.site_control_at,
    })
}

/// The document `--allow` specs stand for; no spec means the default
/// policy, which allows every domain to connect to every port.
fn render_allow(specs: &[String]) -> Result<String, LoadError> {
    if specs.is_empty() {
        return Ok(Policy::allow_all().render());
    }
    let allow = specs
        .iter()
        .map(|spec| {
            policy::parse_allow_spec(spec).map_err(|error| LoadError::Allow {
                spec: spec.clone(),
                error,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Policy {
        site_control: None,
        allow,
    }
    .render())
}

/// Reads a policy file, but never more than one byte past
/// [`policy::MAX_POLICY_LEN`]: enough for validation to refuse an oversize
/// document without reading all of `/dev/zero` or a huge file first.
fn read_policy(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut document = Vec::new();
    std::fs::File::open(path)?
        .take(policy::MAX_POLICY_LEN as u64 + 1)
        .read_to_end(&mut document)?;
    Ok(document)
}

/// Only [`policy::MAX_POLICY_LEN`] + 1 bytes of a file are read: a refusal
/// for size names the file's real size where it has one (not for
/// `/dev/zero` or a pipe).
fn with_file_size(mut e: LoadError, path: &Path) -> LoadError {
    if let LoadError::Policy { error, .. } = &mut e {
        if let Rule::TooLarge { len } = &mut error.rule {
            if let Ok(meta) = std::fs::metadata(path) {
                *len = (*len).max(usize::try_from(meta.len()).unwrap_or(usize::MAX));
            }
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashpolicy_proto::policy::parse_allow_spec;

    pub(super) fn policy(specs: &[&str]) -> Policy {
        Policy {
            site_control: None,
            allow: specs
                .iter()
                .map(|s| parse_allow_spec(s).expect("valid spec"))
                .collect(),
        }
    }

    fn allow(specs: &[&str]) -> PolicySource {
        PolicySource::Allow(specs.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn allow_specs_go_through_the_same_pipeline_as_a_file() {
        let loaded = allow(&["*:843"]).load(&Listen::Default).expect("served");
        assert!(
            loaded.summary.starts_with("generated (1 rules, "),
            "{}",
            loaded.summary
        );
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let rendered = policy(&["*:843"]).render();
        // A rule Unity cannot use is a compatibility warning.
        let unity = allow(&["*.example.com:843"])
            .load(&Listen::Default)
            .expect("served");
        assert_eq!(unity.compat.len(), 1, "{:?}", unity.compat);
        assert!(unity.compat[0].starts_with("--allow:1:22: no <allow-access-from domain=\"*\">"));
        assert_eq!(unity.warnings, unity.compat);
        assert_eq!(loaded.reply.document(), rendered.as_bytes());

        let default = allow(&[]).load(&Listen::Default).expect("served");
        assert_eq!(default.warnings.len(), 1, "{:?}", default.warnings);
        assert!(default.warnings[0].contains("default policy"));
    }

    #[test]
    fn generated_errors_and_warnings_carry_the_generated_name() {
        // Far past MAX_POLICY_LEN once rendered.
        let specs: Vec<String> = (0..400)
            .map(|i| format!("host-{i:04}.some-long-subdomain.example.com:843"))
            .collect();
        let err = PolicySource::Allow(specs)
            .load(&Listen::Default)
            .expect_err("too large");
        assert!(
            matches!(&err, LoadError::Policy { name, .. } if name == GENERATED),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("--allow:1:1: "), "{err}");

        let err = allow(&["example.com"])
            .load(&Listen::Default)
            .expect_err("no ports");
        assert!(
            err.to_string().starts_with("--allow 'example.com': "),
            "{err}"
        );
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let path = PathBuf::from("/nonexistent/flashpolicyd-test/policy.xml");
        let err = PolicySource::File(path)
            .load(&Listen::Default)
            .expect_err("unreadable");
        assert!(
            err.to_string().starts_with(
                "/nonexistent/flashpolicyd-test/policy.xml: cannot read policy file: "
            ),
            "{err}"
        );
    }
}
