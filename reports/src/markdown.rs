//! The report's Markdown summary: the same notes and tables, figures by title and stamp
//! (the plots themselves are in the HTML file).
use crate::report::Report;

/// Renders rows of cells as a GitHub-flavoured Markdown table (`|` in cells escaped).
pub fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out = String::new();
    let h: Vec<String> = header.iter().map(|s| cell(s)).collect();
    out.push_str(&format!("| {} |\n", h.join(" | ")));
    out.push_str(&format!("|{}\n", " --- |".repeat(header.len())));
    for r in rows {
        let r: Vec<String> = r.iter().map(|s| cell(s)).collect();
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    out
}

/// Renders the report as Markdown; `html_name` is the HTML file it points to for plots.
pub fn render(r: &Report, html_name: &str) -> String {
    let mut out = format!("# {}\n\n", r.title);
    for (k, v) in &r.facts {
        out.push_str(&format!("- **{k}**: {v}\n"));
    }
    out.push_str(&format!("\nPlots: see `{html_name}`.\n"));
    for s in &r.sections {
        out.push_str(&format!("\n## {}\n\n", s.title));
        for n in &s.notes {
            out.push_str(&format!("{n}\n\n"));
        }
        for f in &s.figures {
            out.push_str(&format!(
                "*Figure: {}* — {} ({})\n\n",
                f.title,
                f.caption,
                f.stamp.line()
            ));
        }
        for t in &s.tables {
            out.push_str(&format!("**{}**\n\n", t.caption));
            let h: Vec<&str> = t.header.iter().map(String::as_str).collect();
            out.push_str(&markdown_table(&h, &t.rows));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_header_separator_and_rows() {
        let t = markdown_table(&["a", "b"], &[vec!["1".into(), "2".into()]]);
        assert_eq!(t, "| a | b |\n| --- | --- |\n| 1 | 2 |\n");
    }

    #[test]
    fn pipes_in_cells_are_escaped() {
        let t = markdown_table(&["a"], &[vec!["x|y".into()]]);
        assert!(t.contains("x\\|y"));
    }
}
