//! `ringway tune --profile generic|ec2 [--apply]`: the running host against a shipped profile,
//! value by value; `--apply` installs the files and loads the sysctls.

use std::path::PathBuf;

use anyhow::{bail, Context};

use super::probe::{sysctl_path, Host, LiveProbe, RealProbe};
use super::profile::{self, ProfileName};

/// Compare this host with a tuning profile, or apply it.
#[derive(Debug, Clone, clap::Args)]
pub struct TuneArgs {
    #[arg(long, value_enum)]
    pub profile: ProfileName,
    /// Write the sysctl.d/limits.d files and load the sysctls (root).
    #[arg(long)]
    pub apply: bool,
    /// Host root (tests; default $RINGWAY_HOST_ROOT or /).
    #[arg(long, hide = true, value_name = "PATH")]
    pub root: Option<PathBuf>,
}

/// One sysctl of the profile next to the host's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub key: String,
    /// `None` when the host lacks the key.
    pub current: Option<String>,
    pub profile: String,
    pub optional: bool,
}

/// Sysctls whose profile value is a floor: a host already above it is left alone, so applying
/// the profile never shrinks a table or buffer someone sized larger on purpose. Multi-value
/// ones (`tcp_rmem`: min, default, max) are floors value by value.
const FLOORS: &[&str] = &[
    "fs.file-max",
    "fs.nr_open",
    "fs.pipe-max-size",
    "net.core.somaxconn",
    "net.core.netdev_max_backlog",
    "net.core.netdev_budget",
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.rmem_default",
    "net.core.wmem_default",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.netfilter.nf_conntrack_max",
];

impl Diff {
    /// The value applying the profile sets: the profile's, except that a floor keeps each
    /// number the host already has above it.
    pub fn target(&self) -> String {
        match &self.current {
            Some(c) if FLOORS.contains(&self.key.as_str()) => {
                raise_to(c, &self.profile).unwrap_or_else(|| self.profile.clone())
            }
            _ => self.profile.clone(),
        }
    }

    /// True when applying the profile would change this value.
    pub fn differs(&self) -> bool {
        self.current.as_deref() != Some(self.target().as_str())
    }
}

/// `current` with each number raised to at least the profile's; `None` when the two are not
/// lists of numbers of the same length.
fn raise_to(current: &str, profile: &str) -> Option<String> {
    let nums =
        |s: &str| -> Option<Vec<u64>> { s.split_whitespace().map(|n| n.parse().ok()).collect() };
    let (c, p) = (nums(current)?, nums(profile)?);
    if c.len() != p.len() || c.is_empty() {
        return None;
    }
    let raised: Vec<String> = c
        .iter()
        .zip(&p)
        .map(|(c, p)| c.max(p).to_string())
        .collect();
    Some(raised.join(" "))
}

/// A profile file as installed on this host: a floor the host already exceeds is written with
/// the host's value (a comment line says so), so the next boot does not shrink it either.
pub fn installed_text(text: &str, diffs: &[Diff]) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let entry = profile::parse_sysctl(line).into_iter().next();
        let kept = entry.and_then(|e| {
            let d = diffs.iter().find(|d| d.key == e.key)?;
            let t = d.target();
            (t != e.value).then(|| (line.split_once('=').map_or("", |(k, _)| k), e.value, t))
        });
        match kept {
            Some((key, profile, t)) => {
                out.push_str(&format!(
                    "# ringway tune kept this host's higher value (profile: {profile})\n{}= {t}\n",
                    key
                ));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

pub fn diff(host: &Host, p: ProfileName) -> Vec<Diff> {
    profile::sysctls(p)
        .into_iter()
        .map(|e| Diff {
            current: host.sysctl(&e.key),
            key: e.key,
            profile: e.value,
            optional: e.optional,
        })
        .collect()
}

impl TuneArgs {
    pub fn run(self) -> anyhow::Result<i32> {
        let root = self.root.unwrap_or_else(super::default_root);
        let host = Host::real(&root);
        let diffs = diff(&host, self.profile);
        print!("{}", render(&diffs, &RealProbe));
        if !self.apply {
            return Ok(0);
        }
        // SAFETY: geteuid has no preconditions.
        if root == std::path::Path::new("/") && unsafe { libc::geteuid() } != 0 {
            bail!("--apply writes /etc/sysctl.d and /proc/sys: run it as root");
        }
        let failed = apply(&host, self.profile, &diffs)?;
        Ok(i32::from(failed > 0))
    }
}

/// The diff table plus the limits.d items compared with this process's rlimits.
pub fn render(diffs: &[Diff], live: &dyn LiveProbe) -> String {
    let w = diffs.iter().map(|d| d.key.len()).max().unwrap_or(0);
    let mut out = format!("{:<9}  {:<w$}  {:<24}  PROFILE\n", "", "SYSCTL", "CURRENT");
    for d in diffs {
        let mark = match (&d.current, d.differs()) {
            (None, _) if d.optional => "n/a",
            (None, _) => "missing",
            (_, true) => "differs",
            (Some(c), false) if c != &d.profile => "higher",
            (_, false) => "same",
        };
        let cur = d.current.as_deref().unwrap_or("-");
        out.push_str(&format!(
            "{mark:<9}  {:<w$}  {cur:<24}  {}\n",
            d.key, d.profile
        ));
    }
    for (item, got) in [("nofile", live.nofile()), ("memlock", live.memlock())] {
        let want = profile::limit(item).unwrap_or(0);
        // limits.d counts memlock in KiB.
        let want_units = if item == "memlock" { want * 1024 } else { want };
        let cur = got.map_or("unknown".to_string(), |l| format!("{}:{}", l.soft, l.hard));
        let mark = if got.is_some_and(|l| l.soft == want_units && l.hard == want_units) {
            "same"
        } else {
            "differs"
        };
        out.push_str(&format!(
            "{mark:<9}  {:<w$}  {cur:<24}  {want_units}:{want_units}\n",
            format!("limit {item}")
        ));
    }
    out
}

/// Installs the profile files under the host root and writes every differing sysctl; prints what
/// changed and returns how many sysctls could not be set.
pub fn apply(host: &Host, p: ProfileName, diffs: &[Diff]) -> anyhow::Result<usize> {
    for (path, text) in profile::files(p) {
        let dest = host.path(path);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&dest, installed_text(text, diffs))
            .with_context(|| format!("writing {}", dest.display()))?;
        println!("wrote {}", dest.display());
    }
    let mut failed = 0;
    for d in diffs.iter().filter(|d| d.differs()) {
        match load(host, d) {
            Ok(true) => println!(
                "changed {}: {} -> {}",
                d.key,
                d.current.as_deref().unwrap_or("-"),
                d.target()
            ),
            Ok(false) => println!("skipped {}: not on this kernel (optional)", d.key),
            Err(e) => {
                failed += 1;
                eprintln!("failed {}: {e}", d.key);
            }
        }
    }
    println!("limits.d applies at the next login; the service takes LimitNOFILE/LimitMEMLOCK from its unit");
    Ok(failed)
}

/// Writes one sysctl the way `sysctl -w` does; `Ok(false)` for an absent optional key.
fn load(host: &Host, d: &Diff) -> Result<bool, String> {
    let path = host.path(&sysctl_path(&d.key));
    if !path.exists() {
        return if d.optional {
            Ok(false)
        } else {
            Err("no such sysctl on this kernel".into())
        };
    }
    std::fs::write(&path, format!("{}\n", d.target())).map_err(|e| e.to_string())?;
    Ok(true)
}
