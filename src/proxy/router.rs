//! Route selection: host, then the longest matching path prefix, then method.

use crate::config::RouteSpec;
use crate::http::path::{push_segment, separators_as_slashes};

/// Why no route was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// Nothing matches host and path: 404.
    NotFound,
    /// The path matches but the method is not allowed there: 405 (the route's index, for
    /// the `Allow` field the answer must carry).
    MethodNotAllowed(usize),
    /// The path has an encoded slash, a backslash or `;parameters`, and reading them as a
    /// lenient upstream does would choose another route: that upstream would serve what
    /// another route guards (400).
    AmbiguousPath,
}

#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<RouteSpec>,
}

impl Router {
    pub fn new(routes: &[RouteSpec]) -> Router {
        Router {
            routes: routes.to_vec(),
        }
    }

    pub fn route(&self, i: usize) -> &RouteSpec {
        &self.routes[i]
    }

    /// The methods route `i` admits, for a 405's `Allow` field: as configured, plus HEAD
    /// where GET admits it (see [`allows`]).
    pub fn allowed(&self, i: usize) -> String {
        let mut methods = self.routes[i].methods.clone().unwrap_or_default();
        if methods.iter().any(|m| m == "GET") && !methods.iter().any(|m| m == "HEAD") {
            methods.push("HEAD".into());
        }
        methods.join(", ")
    }

    /// Index of the best route for this request. `host` may carry a port; `target` a query.
    pub fn find(&self, host: &[u8], target: &[u8], method: &[u8]) -> Result<usize, Miss> {
        let host = strip_port(host);
        // `OPTIONS *` is about the server as a whole: routed as `/`, forwarded as `*`.
        let path = if target == b"*" {
            b"/"
        } else {
            path_of(target)
        };
        let best = self.best(host, path);
        // Escapes are upper-case after normalisation; a path without `%`, `\` or `;` (nearly
        // all) is routed once.
        if path.iter().any(|&c| matches!(c, b'%' | b'\\' | b';')) {
            let lenient = lenient_reading(path);
            if lenient != path && self.best(host, &lenient) != best {
                return Err(Miss::AmbiguousPath);
            }
        }
        let i = best.ok_or(Miss::NotFound)?;
        match &self.routes[i].methods {
            Some(m) if !m.iter().any(|x| allows(x, method)) => Err(Miss::MethodNotAllowed(i)),
            _ => Ok(i),
        }
    }

    /// The route for `host` (port stripped) and `path`: a host match first, then the longest
    /// prefix.
    fn best(&self, host: &[u8], path: &[u8]) -> Option<usize> {
        let mut best: Option<(usize, (bool, usize))> = None;
        for (i, r) in self.routes.iter().enumerate() {
            let host_ok = r
                .host
                .as_ref()
                .is_none_or(|h| host.eq_ignore_ascii_case(h.as_bytes()));
            if !host_ok || !prefix_matches(path, r.path_prefix.as_bytes()) {
                continue;
            }
            let rank = (r.host.is_some(), r.path_prefix.len());
            if best.is_none_or(|(_, b)| rank > b) {
                best = Some((i, rank));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// `path` as a lenient upstream may read it: `%2F`, `%5C` and `\` as `/`, `;parameters`
/// dropped from each segment (Tomcat, Jetty, Spring), then slashes merged and dot segments
/// resolved (so `/x/..;/admin` and `/%2Fadmin` read `/admin`).
fn lenient_reading(path: &[u8]) -> Vec<u8> {
    let seps = separators_as_slashes(path);
    let mut out: Vec<u8> = Vec::with_capacity(seps.len());
    for seg in seps.split(|&c| c == b'/') {
        let seg = seg.split(|&c| c == b';').next().unwrap_or(seg);
        push_segment(&mut out, seg);
    }
    if out.is_empty() || path.ends_with(b"/") {
        out.push(b'/');
    }
    out
}

/// Whether a configured method admits the request's: GET admits HEAD too (RFC 9110 §9.3.2:
/// HEAD is GET without the content; nginx's `limit_except GET` does the same).
fn allows(configured: &str, method: &[u8]) -> bool {
    configured.as_bytes() == method || (method == b"HEAD" && configured == "GET")
}

/// The target to send upstream: with the route prefix removed when the route strips it.
pub fn upstream_target<'a>(route: &RouteSpec, target: &'a [u8]) -> (&'static [u8], &'a [u8]) {
    if target.first() == Some(&b'?') {
        // An absolute-form target with a query and no path: its path is `/`.
        return (b"/", target);
    }
    if !route.strip_prefix || route.path_prefix == "/" {
        return (b"", target);
    }
    let prefix = route.path_prefix.trim_end_matches('/').len();
    let rest = &target[prefix.min(target.len())..];
    if rest.first() == Some(&b'/') {
        (b"", rest)
    } else {
        (b"/", rest)
    }
}

/// The path of a target; an empty one (`http://host?q` in absolute form) is `/` (RFC 9110
/// §4.2.3).
fn path_of(target: &[u8]) -> &[u8] {
    let end = target
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(target.len());
    match &target[..end] {
        b"" => b"/",
        path => path,
    }
}

/// `/api` matches `/api`, `/api/x` but not `/apix`; `/api/` matches anything under it.
fn prefix_matches(path: &[u8], prefix: &[u8]) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    prefix.last() == Some(&b'/') || path.len() == prefix.len() || path[prefix.len()] == b'/'
}

fn strip_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        let end = host
            .iter()
            .position(|&b| b == b']')
            .map_or(host.len(), |e| e + 1);
        return &host[..end];
    }
    let name = match host.iter().rposition(|&b| b == b':') {
        Some(i) => &host[..i],
        None => host,
    };
    // A fully qualified name's trailing dot names the same host.
    name.strip_suffix(b".").unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn router() -> Router {
        let cfg = r#"
[[listeners]]
address = "127.0.0.1:1"
[[upstreams]]
name = "a"
servers = ["127.0.0.1:2"]
[[routes]]
path_prefix = "/"
upstream = "a"
[[routes]]
path_prefix = "/api"
upstream = "a"
strip_prefix = true
methods = ["GET"]
[[routes]]
host = "example.com"
path_prefix = "/"
upstream = "a"
"#;
        Router::new(&load_str(cfg, "t").unwrap().routes)
    }

    #[test]
    fn picks_longest_prefix_and_host() {
        let r = router();
        assert_eq!(r.find(b"x", b"/api/v1?q", b"GET"), Ok(1));
        assert_eq!(r.find(b"x", b"/apix", b"GET"), Ok(0));
        assert_eq!(
            r.find(b"x", b"/api", b"POST"),
            Err(Miss::MethodNotAllowed(1))
        );
        assert_eq!(r.find(b"x", b"/api", b"HEAD"), Ok(1), "GET admits HEAD");
        assert_eq!(r.find(b"x", b"?q=1", b"GET"), Ok(0), "empty path is /");
        assert_eq!(
            r.find(b"example.com.", b"/z", b"GET"),
            Ok(2),
            "trailing dot"
        );
        assert_eq!(r.find(b"EXAMPLE.com:8080", b"/z", b"GET"), Ok(2));
    }

    #[test]
    fn encoded_separators_that_would_change_the_route_are_refused() {
        let r = router();
        for path in [&b"/api%2Fv1"[..], b"/api%5Cv1", b"/api\\v1"] {
            assert_eq!(r.find(b"x", path, b"GET"), Err(Miss::AmbiguousPath));
        }
        for path in [
            &b"/%2Fapi"[..],
            b"/\\api",
            b"/api;x",
            b"/x/..;/api",
            b"/;/api",
            b"/.;/api",
        ] {
            assert_eq!(
                r.find(b"x", path, b"GET"),
                Err(Miss::AmbiguousPath),
                "{path:?}"
            );
        }
        // Within one route either way: routed as sent.
        assert_eq!(r.find(b"x", b"/api/a%2Fb", b"GET"), Ok(1));
        assert_eq!(r.find(b"x", b"/other%2Fapi", b"GET"), Ok(0));
    }

    #[test]
    fn strips_prefix() {
        let r = router();
        let route = r.route(1);
        assert_eq!(upstream_target(route, b"/api/v1"), (&b""[..], &b"/v1"[..]));
        assert_eq!(
            upstream_target(route, b"/api?x=1"),
            (&b"/"[..], &b"?x=1"[..])
        );
        assert_eq!(upstream_target(route, b"/api"), (&b"/"[..], &b""[..]));
    }
}
