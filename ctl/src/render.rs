//! The one renderer: every command's [`Reply`] becomes `-o table`, `json` or `yaml` here.
//!
//! Anything the server sends may hold terminal escape sequences (an agent's hostname, a
//! report's error text). Text output passes every line through [`clean`] at the end, so no
//! control character reaches the terminal except the newlines this module puts between
//! lines; colour is added after that, by this module only. JSON and YAML keep strings exact:
//! their serializers escape control characters.

use clap::ValueEnum;
use serde_json::Value;

/// Output format, global `-o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned tables and plain sentences for people.
    Table,
    /// Pretty-printed JSON for scripts; the shape is stable.
    Json,
    /// The same data as the JSON, as YAML.
    Yaml,
}

/// What a command answers: its data (`-o json|yaml`) and the text for people (`-o table`).
pub struct Reply {
    /// Drover's API types (crate `drover-api`) serialize into this, the same JSON the HTTP
    /// API answers. An error is kept to be reported rather than turned into a panic.
    data: Result<Value, String>,
    text: Text,
}

impl Reply {
    pub fn new(data: impl serde::Serialize, text: impl Into<Text>) -> Self {
        Self {
            data: serde_json::to_value(data)
                .map_err(|err| format!("cannot turn the answer into JSON: {err}")),
            text: text.into(),
        }
    }

    pub fn render(&self, format: Format, colour: bool) -> Result<String, String> {
        match format {
            Format::Table => Ok(self.text.render(colour)),
            Format::Json => serde_json::to_string_pretty(self.data.as_ref()?)
                .map_err(|err| format!("cannot print the answer as JSON: {err}")),
            // Only the final newline goes (printing adds it back): a block scalar such as
            // `|+` keeps trailing blank lines as part of its value.
            Format::Yaml => serde_norway::to_string(self.data.as_ref()?)
                .map(|yaml| yaml.strip_suffix('\n').unwrap_or(&yaml).to_string())
                .map_err(|err| format!("cannot print the answer as YAML: {err}")),
        }
    }
}

/// Removes control characters (C0, DEL, C1); tabs and line breaks become spaces so the
/// words around them stay apart. Printable Unicode is kept.
pub fn clean(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\t' | '\n' | '\r' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// Red, when colour is on: for errors and halted or rolled-back states.
pub fn paint(text: &str, colour: bool) -> String {
    if colour {
        format!("\x1b[31m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    Plain,
    Alert,
}

struct Line {
    text: String,
    mark: Mark,
}

/// Lines of text for people, some marked as alerts.
#[derive(Default)]
pub struct Text {
    lines: Vec<Line>,
}

impl Text {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one line; line breaks inside `text` (say, from the server) become spaces.
    pub fn line(self, text: impl AsRef<str>) -> Self {
        self.push(text.as_ref(), Mark::Plain)
    }

    /// Like [`Text::line`], shown in red on a terminal.
    pub fn alert(self, text: impl AsRef<str>) -> Self {
        self.push(text.as_ref(), Mark::Alert)
    }

    pub fn table(mut self, table: Table) -> Self {
        self.lines.extend(table.lines());
        self
    }

    fn push(mut self, text: &str, mark: Mark) -> Self {
        self.lines.push(Line {
            text: text.to_string(),
            mark,
        });
        self
    }

    fn render(&self, colour: bool) -> String {
        self.lines
            .iter()
            .map(|line| {
                let text = clean(&line.text);
                match line.mark {
                    Mark::Alert => paint(&text, colour),
                    Mark::Plain => text,
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Text::new().line(text)
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text::new().line(text)
    }
}

impl From<Table> for Text {
    fn from(table: Table) -> Self {
        Text::new().table(table)
    }
}

/// Columns aligned by character count; cells are cleaned when added, so widths are right.
pub struct Table {
    header: Vec<String>,
    rows: Vec<(Vec<String>, Mark)>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_uppercase()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push((cells.iter().map(|c| clean(c)).collect(), Mark::Plain));
    }

    /// A row shown in red on a terminal.
    pub fn alert_row(&mut self, cells: Vec<String>) {
        self.row(cells);
        if let Some(row) = self.rows.last_mut() {
            row.1 = Mark::Alert;
        }
    }

    fn lines(&self) -> impl Iterator<Item = Line> + '_ {
        let columns = self.rows.iter().map(|(cells, _)| cells.len());
        let mut widths = vec![0; columns.chain([self.header.len()]).max().unwrap_or(0)];
        for cells in std::iter::once(&self.header).chain(self.rows.iter().map(|(c, _)| c)) {
            for (width, cell) in widths.iter_mut().zip(cells) {
                *width = (*width).max(cell.chars().count());
            }
        }
        // Padding by hand: `format!("{c:<width$}")` panics for widths above 65,535.
        let line = move |cells: &[String]| {
            let mut out = String::new();
            for (cell, width) in cells.iter().zip(&widths) {
                out.push_str(cell);
                let pad = width.saturating_sub(cell.chars().count()) + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
            out.trim_end().to_string()
        };
        let header = Line {
            text: line(&self.header),
            mark: Mark::Plain,
        };
        let rows = self.rows.iter().map(move |(cells, mark)| Line {
            text: line(cells),
            mark: *mark,
        });
        std::iter::once(header).chain(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn render_rows(rows: &[Vec<String>], colour: bool) -> String {
        let mut table = Table::new(&["one", "two", "three"]);
        for (i, row) in rows.iter().enumerate() {
            if i % 2 == 0 {
                table.row(row.clone());
            } else {
                table.alert_row(row.clone());
            }
        }
        let text = Text::new().line(rows.concat().join(" ")).table(table);
        Reply::new(json!(rows), text)
            .render(Format::Table, colour)
            .unwrap()
    }

    #[test]
    fn a_cell_longer_than_65535_characters_renders() {
        let long = "x".repeat(70_000);
        let mut table = Table::new(&["agent", "group"]);
        table.row(vec![long.clone(), "prod".into()]);
        table.row(vec!["web-01".into(), "dev".into()]);
        let text = Text::from(table).render(false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], format!("{long}  prod"));
        assert_eq!(lines[2].find("dev"), Some(70_002), "columns stay aligned");
    }

    #[test]
    fn escape_sequences_are_removed_and_printable_unicode_kept() {
        let hostile = "web\x1b]0;owned\x07-01\x1b[2J\u{9b}31m\tπ✓\r\nend\u{7f}";
        assert_eq!(clean(hostile), "web]0;owned-01[2J31m π✓  end");
        let out = render_rows(&[vec![hostile.into()]], false);
        assert!(!out.contains('\x1b'), "{out:?}");
    }

    #[test]
    fn colour_marks_alerts_only_when_asked() {
        let rows = [vec!["a".to_string()], vec!["halted".to_string()]];
        assert!(!render_rows(&rows, false).contains('\x1b'));
        let coloured = render_rows(&rows, true);
        assert!(coloured.contains("\x1b[31mhalted\x1b[0m"), "{coloured:?}");
    }

    #[test]
    fn yaml_carries_the_same_data_as_json() {
        let data = json!({ "agent_id": "web-01", "labels": { "env": "prod" }, "count": 3 });
        let reply = Reply::new(data, "text");
        let yaml = reply.render(Format::Yaml, false).unwrap() + "\n";
        let back: Value = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(Ok(back), reply.data);
    }

    fn hostile_string() -> impl Strategy<Value = String> {
        prop_oneof![
            ".*",
            "[\\x00-\\x1f\\x7f-\\u{9f}a-z\\u{202e}\\u{fffd}]{0,64}",
            (0..70_000usize).prop_map(|n| "\x1b[".repeat(n / 2)),
            (60_000..70_000usize).prop_map(|n| "é".repeat(n)),
        ]
    }

    proptest! {
        // 64 in the normal run (long strings are slow); scripts/fuzz raises PROPTEST_CASES.
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64)
        ))]

        #[test]
        fn hostile_strings_never_panic_nor_reach_the_terminal(
            rows in prop::collection::vec(prop::collection::vec(hostile_string(), 0..5), 0..6),
        ) {
            let out = render_rows(&rows, false);
            prop_assert!(out.chars().all(|c| c == '\n' || !c.is_control()));
            // One line of text, the header and one line per row: no row split in two.
            prop_assert_eq!(out.matches('\n').count(), 1 + rows.len());

            let coloured = render_rows(&rows, true).replace("\x1b[31m", "").replace("\x1b[0m", "");
            prop_assert_eq!(coloured, out);

            let reply = Reply::new(json!(rows), "");
            let json = reply.render(Format::Json, false).unwrap();
            prop_assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), json!(rows));
            // As printed: the text and a newline.
            let yaml = reply.render(Format::Yaml, false).unwrap() + "\n";
            prop_assert!(yaml.chars().all(|c| c == '\n' || !c.is_control()), "{:?}", yaml);
            prop_assert_eq!(serde_norway::from_str::<Value>(&yaml).unwrap(), json!(rows));
        }
    }
}
