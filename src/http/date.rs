//! The `Date` field (RFC 9110 §6.6.1): ringway's own answers carry one, and a response
//! forwarded without one gets one added. Formatting is cached per thread for the current
//! second, so this costs a clock read when the second has not changed.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    /// The last second formatted, and its `date: …\r\n` line.
    static LINE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Appends `date: <IMF-fixdate>\r\n` for now.
pub fn push_date_line(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    LINE.with(|cell| {
        let mut line = cell.borrow_mut();
        if line.0 != second {
            *line = (
                second,
                format!("date: {}\r\n", httpdate::fmt_http_date(now)),
            );
        }
        out.extend_from_slice(line.1.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_is_an_imf_fixdate() {
        let mut out = Vec::new();
        super::push_date_line(&mut out);
        let line = String::from_utf8(out).unwrap();
        let value = line
            .strip_prefix("date: ")
            .unwrap()
            .strip_suffix("\r\n")
            .unwrap();
        assert!(value.ends_with(" GMT"), "{value}");
        assert!(httpdate::parse_http_date(value).is_ok(), "{value}");
    }
}
