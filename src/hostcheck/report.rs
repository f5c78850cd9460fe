//! Rendering: a text table for people (fix lines under each WARN/FAIL row) and JSON for tools.

use serde::Serialize;

use super::checks::{Check, Status};
use super::demand::Demand;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where the host was read from (`/` on a real host).
    pub root: String,
    pub config: String,
    pub demand: Demand,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
}

impl Report {
    pub fn summary(&self) -> Summary {
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        Summary {
            pass: count(Status::Pass),
            warn: count(Status::Warn),
            fail: count(Status::Fail),
        }
    }

    pub fn has_fail(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }

    /// Exit code of `ringway check`: 1 when anything fails.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.has_fail())
    }

    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            report: &'a Report,
            summary: Summary,
        }
        let out = Out {
            report: self,
            summary: self.summary(),
        };
        serde_json::to_string_pretty(&out).expect("report serialises")
    }

    pub fn to_text(&self) -> String {
        render_rows(&self.checks, &self.header())
    }

    fn header(&self) -> String {
        let s = self.summary();
        format!(
            "ringway host check (root {}, config {})\nfd demand: {}\n{} PASS, {} WARN, {} FAIL\n",
            self.root, self.config, self.demand.fds_formula, s.pass, s.warn, s.fail
        )
    }
}

/// A table of `rows` under `header`; each WARN/FAIL row is followed by its `fix:` lines.
pub fn render_rows(rows: &[Check], header: &str) -> String {
    let w_name = rows.iter().map(|c| c.name.len()).max().unwrap_or(0).max(5);
    let w_cur = rows
        .iter()
        .map(|c| c.current.len())
        .max()
        .unwrap_or(0)
        .clamp(7, 48);
    let mut out = String::from(header);
    out.push_str(&format!(
        "\n{:<4}  {:<9}  {:<w_name$}  {:<w_cur$}  REQUIRED\n",
        "", "AREA", "CHECK", "CURRENT"
    ));
    for c in rows {
        out.push_str(&format!(
            "{:<4}  {:<9}  {:<w_name$}  {:<w_cur$}  {}\n",
            c.status.as_str(),
            c.group,
            c.name,
            c.current,
            c.required
        ));
        for f in &c.fix {
            out.push_str(&format!("{:<16}fix: {f}\n", ""));
        }
    }
    out
}
