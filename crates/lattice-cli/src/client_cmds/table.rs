//! Aligned text tables (squeue / sinfo style: column widths from the content, numbers to the
//! right) and the time formats they show.

use lattice_core::Timestamp;

use super::output::one_line;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Columns with a header each; rows are added as cell strings.
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

fn cell(row: &[String], i: usize) -> &str {
    row.get(i).map(String::as_str).unwrap_or("")
}

/// Space between columns.
const GAP: &str = "  ";

impl Table {
    pub fn new(columns: Vec<(&'static str, Align)>) -> Self {
        Table {
            columns,
            rows: Vec::new(),
        }
    }

    /// Adds a row; cells are made single-line and an empty cell shows as `-`.
    pub fn row(&mut self, cells: Vec<String>) {
        let cells = cells
            .iter()
            .map(|c| match one_line(c) {
                s if s.is_empty() => "-".to_string(),
                s => s,
            })
            .collect();
        self.rows.push(cells);
    }

    /// The header and the rows, each line ending in a newline and none in a space.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| cell(r, i).chars().count())
                    .chain([self.columns[i].0.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let header: Vec<String> = self.columns.iter().map(|c| c.0.to_string()).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (_, align)) in self.columns.iter().enumerate() {
                if i > 0 {
                    line.push_str(GAP);
                }
                let text = cell(row, i);
                let pad = " ".repeat(widths[i].saturating_sub(text.chars().count()));
                match align {
                    Align::Left => {
                        line.push_str(text);
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(text);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Slurm's elapsed-time style: `M:SS` under an hour, `H:MM:SS` under a day, else `D-HH:MM:SS`.
pub fn format_elapsed(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if secs < 3600 {
        format!("{m}:{s:02}")
    } else if secs < 86400 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    }
}

/// A timestamp to the second, in UTC: `2026-03-01T12:00:00Z`.
pub fn format_time(t: Timestamp) -> String {
    let text = t.to_rfc3339();
    match text.split_once('.') {
        Some((secs, rest)) if rest.ends_with('Z') => format!("{secs}Z"),
        _ => text,
    }
}

/// How long ago `then` was, compactly (`5s ago`, `3m ago`, `2h ago`, `4d ago`).
pub fn format_age(then: Timestamp, now: Timestamp) -> String {
    let secs = now.millis_since(then) / 1000;
    match secs {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s if s < 2 * 86400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_to_their_widest_cell() {
        let mut t = Table::new(vec![
            ("ID", Align::Right),
            ("NAME", Align::Left),
            ("NODES", Align::Right),
            ("LIST", Align::Left),
        ]);
        t.row(vec![
            "7".into(),
            "a-long-name".into(),
            "12".into(),
            "n1,n2".into(),
        ]);
        t.row(vec!["1234".into(), "b".into(), "1".into(), "".into()]);
        assert_eq!(
            t.render(),
            "  ID  NAME         NODES  LIST\n\
             \x20  7  a-long-name     12  n1,n2\n\
             1234  b                1  -\n"
        );
    }

    #[test]
    fn cells_stay_on_one_line_and_widths_count_characters() {
        let mut t = Table::new(vec![("A", Align::Left), ("B", Align::Left)]);
        t.row(vec!["é\nx".into(), "y".into()]);
        t.row(vec!["abc".into(), "z".into()]);
        assert_eq!(t.render(), "A    B\né x  y\nabc  z\n");
    }

    #[test]
    fn header_only_when_empty() {
        let t = Table::new(vec![("ID", Align::Right), ("NAME", Align::Left)]);
        assert_eq!(t.render(), "ID  NAME\n");
    }

    #[test]
    fn elapsed_like_slurm() {
        assert_eq!(format_elapsed(0), "0:00");
        assert_eq!(format_elapsed(5), "0:05");
        assert_eq!(format_elapsed(65), "1:05");
        assert_eq!(format_elapsed(3599), "59:59");
        assert_eq!(format_elapsed(3600), "1:00:00");
        assert_eq!(format_elapsed(86399), "23:59:59");
        assert_eq!(format_elapsed(86400), "1-00:00:00");
        assert_eq!(
            format_elapsed(2 * 86400 + 3 * 3600 + 4 * 60 + 5),
            "2-03:04:05"
        );
    }

    #[test]
    fn times_and_ages() {
        let t = Timestamp::from_millis(1_772_366_400_123);
        assert_eq!(format_time(t), "2026-03-01T12:00:00Z");
        let later = |s: u64| Timestamp::from_millis(t.as_millis() + s * 1000);
        assert_eq!(format_age(t, later(5)), "5s ago");
        assert_eq!(format_age(t, later(600)), "10m ago");
        assert_eq!(format_age(t, later(3 * 3600)), "3h ago");
        assert_eq!(format_age(t, later(3 * 86400)), "3d ago");
        assert_eq!(
            format_age(later(10), t),
            "0s ago",
            "a clock behind the server's"
        );
    }
}
