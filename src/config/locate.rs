//! Where a key is in a config file, for errors found after parsing (a missing upstream, a
//! duplicate name): the TOML is read again keeping only each value's position.

use std::fmt;

/// The line of `key` (a path such as `routes[1].name` or `upstreams[0].servers[2]`) in `text`,
/// for errors found after parsing. A key that is not written (a default) gives the line of the
/// nearest table or array that is, such as the `[[routes]]` header; `None` when not even the
/// first segment is in the file.
pub fn line_of(text: &str, key: &str) -> Option<usize> {
    let root: SpanTree = toml::from_str(text).ok()?;
    let mut node = &root;
    let mut found = None;
    for seg in key_segments(key)? {
        let next = match (&node.kind, seg) {
            (SpanKind::Table(t), Seg::Key(k)) => t.get(k),
            (SpanKind::Array(a), Seg::Index(i)) => a.get(i),
            _ => None,
        };
        let Some(next) = next else { break };
        if let Some(span) = &next.span {
            found = Some(span.start);
        }
        node = next;
    }
    found.map(|start| text[..start.min(text.len())].matches('\n').count() + 1)
}

/// The key written on line `line` (1-based) of `text`, with its table (`limits.max_headers`,
/// `listeners[0].max_connections`): for errors the TOML parser finds before any key is known
/// (an integer too large for 64 bits), whose message names only the line. A plain scan, since
/// the text does not parse; dotted and quoted keys come out as written.
pub fn key_at_line(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for (i, l) in text.lines().enumerate().take(line) {
        let l = l.trim();
        if let Some(name) = l
            .strip_prefix("[[")
            .and_then(|r| r.split_once("]]"))
            .map(|r| r.0)
        {
            let n = counts.entry(name.trim().to_string()).or_insert(0);
            table = format!("{}[{}]", name.trim(), *n);
            *n += 1;
        } else if let Some(name) = l
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .map(|r| r.0)
        {
            table = name.trim().to_string();
        } else if i + 1 == line {
            let key = l.split_once('=')?.0.trim();
            if key.is_empty() || key.starts_with('#') {
                return None;
            }
            return Some(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
    }
    None
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// `routes[1].name` → `routes`, `1`, `name`.
fn key_segments(key: &str) -> Option<Vec<Seg<'_>>> {
    let mut out = Vec::new();
    for part in key.split('.').filter(|p| !p.is_empty()) {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            out.push(Seg::Key(name));
        }
        while let Some((idx, after)) = rest.split_once(']') {
            out.push(Seg::Index(idx.parse().ok()?));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    Some(out)
}

/// A TOML document reduced to where each value is: tables, arrays and their spans.
struct SpanTree {
    span: Option<std::ops::Range<usize>>,
    kind: SpanKind,
}

enum SpanKind {
    Table(std::collections::BTreeMap<String, SpanTree>),
    Array(Vec<SpanTree>),
    Leaf,
}

impl<'de> serde::Deserialize<'de> for SpanTree {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SpanKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any TOML value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<SpanKind, A::Error> {
                let mut t = std::collections::BTreeMap::new();
                while let Some(k) = m.next_key::<String>()? {
                    let v: Spanned = m.next_value()?;
                    t.insert(k, v.0);
                }
                Ok(SpanKind::Table(t))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<SpanKind, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = s.next_element::<Spanned>()? {
                    v.push(x.0);
                }
                Ok(SpanKind::Array(v))
            }
            fn visit_bool<E>(self, _: bool) -> Result<SpanKind, E> {
                Ok(SpanKind::Leaf)
            }
            fn visit_i64<E>(self, _: i64) -> Result<SpanKind, E> {
                Ok(SpanKind::Leaf)
            }
            fn visit_u64<E>(self, _: u64) -> Result<SpanKind, E> {
                Ok(SpanKind::Leaf)
            }
            fn visit_f64<E>(self, _: f64) -> Result<SpanKind, E> {
                Ok(SpanKind::Leaf)
            }
            fn visit_str<E>(self, _: &str) -> Result<SpanKind, E> {
                Ok(SpanKind::Leaf)
            }
        }
        Ok(SpanTree {
            span: None,
            kind: d.deserialize_any(V)?,
        })
    }
}

/// A [`SpanTree`] under a key or in an array, with its span when the parser has one (a value
/// without a span, such as an implicit table, is still walked through).
struct Spanned(SpanTree);

impl<'de> serde::Deserialize<'de> for Spanned {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = toml::Spanned::<SpanTree>::deserialize(d)?;
        let span = v.span();
        let mut tree = v.into_inner();
        tree.span = Some(span);
        Ok(Spanned(tree))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_segments_split_indices() {
        assert!(line_of("a = 1", "").is_none());
        let segs = key_segments("upstreams[3].servers[12]").unwrap();
        let shown: Vec<String> = segs
            .iter()
            .map(|s| match s {
                Seg::Key(k) => k.to_string(),
                Seg::Index(i) => format!("#{i}"),
            })
            .collect();
        assert_eq!(shown, ["upstreams", "#3", "servers", "#12"]);
    }
}
