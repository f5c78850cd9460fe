//! The shipped tuning profiles, embedded so `ringway tune` and the tests use the exact files.

pub const GENERIC_SYSCTL: &str = include_str!("../../tuning/sysctl.d/60-ringway.conf");
pub const EC2_SYSCTL: &str = include_str!("../../tuning/sysctl.d/61-ringway-ec2.conf");
pub const LIMITS: &str = include_str!("../../tuning/limits.d/ringway.conf");

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileName {
    Generic,
    Ec2,
}

/// One `key = value` line of a sysctl.d file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlEntry {
    pub key: String,
    /// Whitespace normalised to single spaces, as [`super::probe::Host::sysctl`] reads it.
    pub value: String,
    /// Written as `-key = value`: skipped where the kernel lacks the key.
    pub optional: bool,
}

/// One `<domain> <type> <item> <value>` line of a limits.d file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitEntry {
    pub domain: String,
    pub kind: String,
    pub item: String,
    pub value: u64,
}

/// A profile's files: (install path, contents), in install order.
pub fn files(p: ProfileName) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        ("/etc/sysctl.d/60-ringway.conf", GENERIC_SYSCTL),
        ("/etc/security/limits.d/ringway.conf", LIMITS),
    ];
    if p == ProfileName::Ec2 {
        v.push(("/etc/sysctl.d/61-ringway-ec2.conf", EC2_SYSCTL));
    }
    v
}

/// The sysctls a profile sets; a later file overrides an earlier one, as `sysctl --system` does.
pub fn sysctls(p: ProfileName) -> Vec<SysctlEntry> {
    let mut out: Vec<SysctlEntry> = Vec::new();
    let texts = match p {
        ProfileName::Generic => vec![GENERIC_SYSCTL],
        ProfileName::Ec2 => vec![GENERIC_SYSCTL, EC2_SYSCTL],
    };
    for e in texts.into_iter().flat_map(parse_sysctl) {
        out.retain(|x| x.key != e.key);
        out.push(e);
    }
    out
}

pub fn parse_sysctl(text: &str) -> Vec<SysctlEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            let k = k.trim();
            Some(SysctlEntry {
                key: k.trim_start_matches('-').replace('/', ".").to_string(),
                value: v.split_whitespace().collect::<Vec<_>>().join(" "),
                optional: k.starts_with('-'),
            })
        })
        .collect()
}

pub fn limits() -> Vec<LimitEntry> {
    LIMITS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(LimitEntry {
                domain: f.first()?.to_string(),
                kind: f.get(1)?.to_string(),
                item: f.get(2)?.to_string(),
                value: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// The profile's value of a limits.d item (`nofile`, `memlock` …) for the hard limit.
pub fn limit(item: &str) -> Option<u64> {
    limits()
        .into_iter()
        .find(|l| l.item == item && l.kind != "soft")
        .map(|l| l.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_has_a_comment_and_no_tw_recycle() {
        for text in [GENERIC_SYSCTL, EC2_SYSCTL, LIMITS] {
            let lines: Vec<&str> = text.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                let l = l.trim();
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                assert!(!l.contains("tw_recycle"), "tcp_tw_recycle shipped: {l}");
                assert!(
                    i > 0
                        && lines[..i]
                            .iter()
                            .rev()
                            .take_while(|p| !p.trim().is_empty())
                            .any(|p| p.trim().starts_with('#')),
                    "no comment above {l:?}"
                );
            }
        }
    }

    #[test]
    fn profiles_parse() {
        let g = sysctls(ProfileName::Generic);
        assert!(g
            .iter()
            .any(|e| e.key == "net.core.somaxconn" && e.value == "65535"));
        assert!(g
            .iter()
            .any(|e| e.key == "kernel.io_uring_disabled" && e.optional));
        let e = sysctls(ProfileName::Ec2);
        assert!(e.len() > g.len() && e.iter().any(|e| e.key == "net.ipv4.tcp_mtu_probing"));
        assert_eq!(limit("nofile"), Some(1_048_576));
        assert!(
            limit("nofile").unwrap()
                <= g.iter()
                    .find(|e| e.key == "fs.nr_open")
                    .unwrap()
                    .value
                    .parse()
                    .unwrap()
        );
    }
}
