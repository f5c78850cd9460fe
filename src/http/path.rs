//! Request path normalisation (RFC 3986 §6.2.2: percent-encoding normalised, dot segments
//! removed as in §5.2.4, plus merged slashes).
//!
//! Routes match path prefixes, and later policies will be scoped by route, so the gateway and
//! the upstream must agree on what path a request names. `/public/../admin` matches a
//! `/public` route by prefix, yet an upstream that resolves dot segments serves `/admin`;
//! `//admin` and `/%61dmin` slip past an `/admin` route the same way (an upstream decodes the
//! escape). The path is therefore normalised before routing, and the normalised path is what is
//! forwarded:
//! - escapes of unreserved characters (letters, digits, `-._~`) are decoded, and the hex digits
//!   of the other escapes upper-cased (§6.2.2.1–2), so `/%61dmin` is `/admin` and `/caf%c3%a9`
//!   is `/caf%C3%A9`;
//! - `.` and `..` segments are resolved (never above `/`) and empty segments dropped.
//!
//! Refused with a 400, as no client needs them and an upstream that decodes late would see a
//! path the gateway never routed: a malformed escape, a dot segment spelt with escapes
//! (`%2e%2e`), a dot segment hidden behind an encoded slash or backslash (`..%2f`, `%5c..`),
//! a raw non-ASCII byte in the path (`/café` would route apart from `/caf%C3%A9`), and a
//! fragment (`#`: RFC 9112 request targets have none). The query is kept as sent.
//!
//! A normalised path is never longer than the original, so the work is done in place in the
//! request buffer; paths that need none (nearly all) are found by one pass over the path that
//! leaves them untouched.

/// Normalises the path of `target` (path and query, origin-form) in place and returns the
/// target's new length. Targets that do not start with '/' (`*`) are left alone.
pub fn normalize(target: &mut [u8]) -> Result<usize, &'static str> {
    let (path_end, work) = scan(target)?;
    let path = &target[..path_end];
    if !work || !path.starts_with(b"/") {
        return Ok(target.len());
    }
    let clean = resolve(path)?;
    let query_len = target.len() - path_end;
    target[..clean.len()].copy_from_slice(&clean);
    target.copy_within(path_end.., clean.len());
    Ok(clean.len() + query_len)
}

/// Whether `path` (no query) is already in normal form: what a route's `path_prefix` must be,
/// since requests are matched after normalisation.
pub fn is_normal(path: &str) -> bool {
    let mut b = path.as_bytes().to_vec();
    path.bytes().all(is_path_byte) && normalize(&mut b).is_ok_and(|n| b[..n] == *path.as_bytes())
}

/// Bytes a path may hold (RFC 3986 `pchar` and `/`): no spaces, controls, non-ASCII, `?`, `#`.
fn is_path_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@%/".contains(&c)
}

/// One pass over the path: where it ends (at `?`), and whether it may need work: a slash
/// followed by a slash or a dot (an empty or dot segment), or any escape or backslash. A fragment (`#`,
/// anywhere) is refused: RFC 9112 request targets have none, and RFC 9110 §7.1 keeps fragments
/// on the client. A byte loop, not memchr: paths are short, and this runs on every request.
fn scan(target: &[u8]) -> Result<(usize, bool), &'static str> {
    const FRAGMENT: &str = "fragment in request target";
    let mut work = false;
    let mut after_slash = false;
    for (i, &c) in target.iter().enumerate() {
        match c {
            b'?' if memchr::memchr(b'#', &target[i..]).is_some() => return Err(FRAGMENT),
            b'?' => return Ok((i, work)),
            b'#' => return Err(FRAGMENT),
            b'%' | b'\\' => work = true,
            // Raw non-ASCII: not a URI (RFC 3986 §2), and an upstream decoding `%C3%A9` would
            // see the same path as one taking `é` raw, which would route apart.
            0x80.. => return Err("non-ASCII byte in request path (percent-encode it)"),
            b'/' | b'.' if after_slash => work = true,
            _ => {}
        }
        after_slash = c == b'/';
    }
    Ok((target.len(), work))
}

/// The path with escapes normalised and empty, `.` and `..` segments resolved (never above the
/// root), keeping a trailing slash where the last segment was empty or a dot segment.
fn resolve(path: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out: Vec<u8> = Vec::with_capacity(path.len());
    let segments: Vec<&[u8]> = path[1..].split(|&c| c == b'/').collect();
    let last = segments.len() - 1;
    let mut decoded;
    for (i, raw) in segments.iter().enumerate() {
        let seg: &[u8] = if raw.iter().any(|&c| c == b'%' || c == b'\\') {
            decoded = normalize_escapes(raw)?;
            if raw.contains(&b'%') && dots(&decoded).is_some() {
                return Err("percent-encoded dot segment in path");
            }
            if hides_dot_segment(&decoded) {
                return Err("encoded slash or backslash beside a dot segment in path");
            }
            &decoded
        } else {
            raw
        };
        // A dot or empty segment at the end leaves a directory: keep its slash.
        if !push_segment(&mut out, seg) && i == last {
            out.push(b'/');
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

/// Adds one segment to a path being resolved (RFC 3986 §5.2.4): `.` and empty segments add
/// nothing, `..` removes the last segment (never above the root), any other is appended.
/// Whether it was appended.
pub fn push_segment(out: &mut Vec<u8>, seg: &[u8]) -> bool {
    match dots(seg) {
        Some(1) => false,
        Some(_) => {
            let parent = out.iter().rposition(|&c| c == b'/').unwrap_or(0);
            out.truncate(parent);
            false
        }
        None if seg.is_empty() => false,
        None => {
            out.push(b'/');
            out.extend_from_slice(seg);
            true
        }
    }
}

/// `Some(1)` for `.`, `Some(2)` for `..`, `None` for any other segment.
fn dots(seg: &[u8]) -> Option<u8> {
    match seg {
        b"." => Some(1),
        b".." => Some(2),
        _ => None,
    }
}

/// A segment with its unreserved escapes decoded and the other escapes' hex upper-cased; an
/// error for a `%` not followed by two hex digits.
fn normalize_escapes(seg: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(seg.len());
    let mut i = 0;
    while i < seg.len() {
        if seg[i] != b'%' {
            out.push(seg[i]);
            i += 1;
            continue;
        }
        let hex = |k: usize| seg.get(k).and_then(|&c| (c as char).to_digit(16));
        let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
            return Err("malformed percent-encoding in path");
        };
        let byte = (hi * 16 + lo) as u8;
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte);
        } else {
            out.push(b'%');
            out.extend_from_slice(&[seg[i + 1], seg[i + 2]].map(|c| c.to_ascii_uppercase()));
        }
        i += 3;
    }
    Ok(out)
}

/// True when splitting a (normalised) segment at encoded slashes and backslashes, or a literal
/// backslash, would give a `.` or `..` piece: an upstream that decodes `%2F` or treats `\` as a
/// separator would resolve it.
fn hides_dot_segment(seg: &[u8]) -> bool {
    let read = separators_as_slashes(seg);
    read.contains(&b'/') && read.split(|&c| c == b'/').any(|p| dots(p).is_some())
}

/// `path` with `%2F`, `%5C` (upper-case, as after normalisation) and `\` read as `/`: what an
/// upstream that decodes them sees.
pub fn separators_as_slashes(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        match &path[i..] {
            [b'%', b'2', b'F', ..] | [b'%', b'5', b'C', ..] => {
                out.push(b'/');
                i += 3;
            }
            [b'\\', ..] => {
                out.push(b'/');
                i += 1;
            }
            [c, ..] => {
                out.push(*c);
                i += 1;
            }
            [] => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    fn norm(t: &str) -> Result<String, &'static str> {
        let mut b = t.as_bytes().to_vec();
        let n = normalize(&mut b)?;
        Ok(String::from_utf8(b[..n].to_vec()).unwrap())
    }

    #[test]
    fn clean_paths_are_untouched() {
        for t in [
            "/",
            "/a",
            "/a/b.css",
            "/a/",
            "/a?x=/../y",
            "/a.b/c..d/.e",
            "*",
        ] {
            assert_eq!(norm(t).unwrap(), t);
        }
    }

    #[test]
    fn dot_segments_and_empty_segments_are_resolved() {
        let cases = [
            ("/public/../admin", "/admin"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/..", "/"),
            ("/../../x", "/x"),
            ("//admin", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/a/b/../../../c?q=/../", "/c?q=/../"),
            ("/.", "/"),
            ("/a/..?x", "/?x"),
        ];
        for (t, want) in cases {
            assert_eq!(norm(t).unwrap(), want, "{t}");
        }
    }

    #[test]
    fn escapes_are_normalised() {
        let cases = [
            ("/%61dmin/users", "/admin/users"),
            ("/%61%64%6d%69%6e", "/admin"),
            ("/adm%69n?q=%61", "/admin?q=%61"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%2fb", "/a%2Fb"),
            ("/%7euser/%2d%5f", "/~user/-_"),
            ("/a/%2ex/b", "/a/.x/b"),
            ("/a/b%2e/c", "/a/b./c"),
            ("/%00", "/%00"),
        ];
        for (t, want) in cases {
            assert_eq!(norm(t).unwrap(), want, "{t}");
        }
        for t in ["/%", "/%4", "/%zz", "/a%g1", "/caf\u{e9}", "/\u{e9}?q"] {
            assert!(norm(t).is_err(), "{t}");
        }
        // The query is passed as sent.
        assert_eq!(norm("/a?caf\u{e9}").unwrap(), "/a?caf\u{e9}");
    }

    #[test]
    fn dot_segments_behind_encoded_separators_are_refused() {
        for t in [
            "/public/..%2fadmin",
            "/public/%2e%2e%2fadmin",
            "/public/..%5cadmin",
            "/public/x%2F..",
            "/a/.%2Fb",
            "/a/..\\b",
        ] {
            assert!(norm(t).is_err(), "{t}");
        }
        assert_eq!(norm("/a%2F..b").unwrap(), "/a%2F..b");
        assert_eq!(norm("/group%2fproject/x").unwrap(), "/group%2Fproject/x");
    }

    #[test]
    fn normal_form_is_recognised() {
        for p in ["/", "/api", "/api/", "/caf%C3%A9"] {
            assert!(super::is_normal(p), "{p}");
        }
        for p in [
            "/a/../b",
            "//s",
            "/q?x=1",
            "/a#b",
            "/%61",
            "/caf%c3%a9",
            "/a/.",
        ] {
            assert!(!super::is_normal(p), "{p}");
        }
    }

    #[test]
    fn encoded_dot_segments_are_refused() {
        for t in ["/a/%2e%2e/b", "/a/%2E/b", "/a/.%2e", "/a/%2e.?x"] {
            assert!(norm(t).is_err(), "{t}");
        }
    }

    #[test]
    fn fragments_are_refused() {
        for t in ["/a#b", "/a?x#y", "/#"] {
            assert!(norm(t).is_err(), "{t}");
        }
    }
}
