//! Human units in config files: durations like `"250ms"`, `"30s"`, `"2m"` and sizes like `"64KiB"`.

use serde::Deserialize;

/// A duration written as `<number><unit>` with unit ms, s, m or h (a bare integer is seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }
}

/// A byte count written as an integer or `<number><unit>` with unit B, KiB, MiB or GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

fn split_unit(s: &str) -> Option<(u64, &str)> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n = s[..digits].parse().ok()?;
    Some((n, s[digits..].trim()))
}

pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let (n, unit) = split_unit(s)?;
    Some(match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" | "" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n.checked_mul(60)?),
        "h" => std::time::Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    })
}

pub fn parse_size(s: &str) -> Option<u64> {
    let (n, unit) = split_unit(s)?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrStr {
    Int(u64),
    Str(String),
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const WANT: &str = "expected a duration such as \"500ms\", \"30s\" or \"2m\"";
        match IntOrStr::deserialize(d).map_err(|_| serde::de::Error::custom(WANT))? {
            IntOrStr::Int(n) => Ok(Duration(std::time::Duration::from_secs(n))),
            IntOrStr::Str(s) => parse_duration(&s)
                .map(Duration)
                .ok_or_else(|| serde::de::Error::custom(format!("{WANT}, got {s:?}"))),
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const WANT: &str = "expected a size such as 16384, \"64KiB\" or \"1MiB\"";
        match IntOrStr::deserialize(d).map_err(|_| serde::de::Error::custom(WANT))? {
            IntOrStr::Int(n) => Ok(ByteSize(n)),
            IntOrStr::Str(s) => parse_size(&s)
                .map(ByteSize)
                .ok_or_else(|| serde::de::Error::custom(format!("{WANT}, got {s:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn units() {
        assert_eq!(
            parse_duration("250ms"),
            Some(std::time::Duration::from_millis(250))
        );
        assert_eq!(
            parse_duration("2m"),
            Some(std::time::Duration::from_secs(120))
        );
        assert_eq!(parse_duration("2 weeks"), None);
        assert_eq!(parse_size("64KiB"), Some(65536));
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("x"), None);
    }
}
