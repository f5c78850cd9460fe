//! Request path normalisation (RFC 3986 §5.2.4 dot-segment removal, plus merged slashes).
//!
//! Routes match path prefixes, and later policies will be scoped by route, so the gateway and
//! the upstream must agree on what path a request names. `/public/../admin` matches a
//! `/public` route by prefix, yet an upstream that resolves dot segments serves `/admin`;
//! `//admin` slips past an `/admin` route the same way. The path is therefore normalised
//! before routing, and the normalised path is what is forwarded. Dot segments spelt with
//! percent-encoding (`%2e%2e`) are refused rather than decoded: no client needs them, and an
//! upstream that decodes them late would see a path the gateway never routed.
//!
//! A target with a fragment (`#`) is refused too: RFC 9112 request targets have none. The
//! query is kept as sent. A normalised path is never longer than the original, so the
//! work is done in place in the request buffer; paths that need none (nearly all) are found by
//! one pass over the path that leaves them untouched.

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

/// One pass over the path: where it ends (at `?`), and whether any slash is followed by
/// another slash, a dot or a percent sign (only then can a segment be empty, a dot segment or
/// an encoded one). A fragment (`#`, anywhere) is refused: RFC 9112 request targets have none,
/// and RFC 9110 §7.1 keeps fragments on the client. A byte loop, not memchr: paths are short,
/// and this runs on every request.
fn scan(target: &[u8]) -> Result<(usize, bool), &'static str> {
    const FRAGMENT: &str = "fragment in request target";
    let mut work = false;
    let mut after_slash = false;
    for (i, &c) in target.iter().enumerate() {
        match c {
            b'?' if memchr::memchr(b'#', &target[i..]).is_some() => return Err(FRAGMENT),
            b'?' => return Ok((i, work)),
            b'#' => return Err(FRAGMENT),
            b'/' | b'.' | b'%' if after_slash => work = true,
            _ => {}
        }
        after_slash = c == b'/';
    }
    Ok((target.len(), work))
}

/// The path with empty, `.` and `..` segments resolved (never above the root), keeping a
/// trailing slash where the last segment was empty or a dot segment.
fn resolve(path: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out: Vec<u8> = Vec::with_capacity(path.len());
    let segments: Vec<&[u8]> = path[1..].split(|&c| c == b'/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        let dir = i == last; // a dot segment at the end leaves a directory: keep its slash
        match dots(seg)? {
            Some(1) => {}
            Some(_) => {
                let parent = out.iter().rposition(|&c| c == b'/').unwrap_or(0);
                out.truncate(parent);
            }
            None if seg.is_empty() => {}
            None => {
                out.push(b'/');
                out.extend_from_slice(seg);
                continue;
            }
        }
        if dir {
            out.push(b'/');
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

/// `Some(1)` for `.`, `Some(2)` for `..`, `None` for any other segment; an error for a dot
/// segment with a percent-encoded dot in it.
fn dots(seg: &[u8]) -> Result<Option<u8>, &'static str> {
    if seg == b"." {
        return Ok(Some(1));
    }
    if seg == b".." {
        return Ok(Some(2));
    }
    if seg.len() > 6 || !seg.contains(&b'%') {
        return Ok(None);
    }
    let lower = seg.to_ascii_lowercase();
    let decoded = String::from_utf8_lossy(&lower).replace("%2e", ".");
    if decoded == "." || decoded == ".." {
        return Err("percent-encoded dot segment in path");
    }
    Ok(None)
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
            "/%41",
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
    fn encoded_dot_segments_are_refused() {
        for t in ["/a/%2e%2e/b", "/a/%2E/b", "/a/.%2e", "/a/%2e.?x"] {
            assert!(norm(t).is_err(), "{t}");
        }
        assert_eq!(norm("/a/%2ex/b").unwrap(), "/a/%2ex/b");
    }

    #[test]
    fn fragments_are_refused() {
        for t in ["/a#b", "/a?x#y", "/#"] {
            assert!(norm(t).is_err(), "{t}");
        }
    }
}
