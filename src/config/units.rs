//! Human units in config files: durations like `"250ms"`, `"30s"`, `"2m"` and sizes like `"64KiB"`.

use serde::Deserialize;

/// A duration written as `<number><unit>` with unit ms, s, m or h (a bare integer is seconds),
/// at most [`MAX_DURATION`] (30 days): every duration in the config is added to an `Instant` or
/// handed to the kernel in milliseconds at run time, where a larger one overflows.
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

/// The largest duration a config accepts: 30 days (`"720h"`). Larger values would overflow
/// `Instant` arithmetic (a panic on every request or at shutdown); no timeout in ringway needs
/// more than days.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

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
        let (d, written) =
            match IntOrStr::deserialize(d).map_err(|_| serde::de::Error::custom(WANT))? {
                IntOrStr::Int(n) => (std::time::Duration::from_secs(n), n.to_string()),
                IntOrStr::Str(s) => match parse_duration(&s) {
                    Some(d) => (d, format!("{s:?}")),
                    None => return Err(serde::de::Error::custom(format!("{WANT}, got {s:?}"))),
                },
            };
        if d > MAX_DURATION {
            return Err(serde::de::Error::custom(format!(
                "expected a duration of at most 30 days (\"720h\"), got {written}"
            )));
        }
        Ok(Duration(d))
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

    fn de(v: &str) -> Result<Duration, String> {
        #[derive(serde::Deserialize)]
        struct T {
            d: Duration,
        }
        toml::from_str::<T>(&format!("d = {v}"))
            .map(|t| t.d)
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn durations_are_bounded_to_30_days() {
        assert_eq!(de("\"720h\"").unwrap().0, MAX_DURATION);
        assert_eq!(de("2592000").unwrap().0, MAX_DURATION);
        for bad in ["\"721h\"", "\"4000000000000000h\"", "2592001", "\"43201m\""] {
            let e = de(bad).unwrap_err();
            assert!(e.contains("at most 30 days"), "{bad}: {e}");
        }
    }
}
