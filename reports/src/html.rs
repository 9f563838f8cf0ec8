//! The report as one self-contained HTML file: inline CSS and SVG, no scripts, no network;
//! printable (`@media print`: no navigation, figures not split across pages).
use crate::report::{Report, TableData};

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  margin: 0 auto; max-width: 1180px; padding: 16px 24px 48px; color: #1b1b1b; background: #fff;
  line-height: 1.45; }
h1 { font-size: 1.6rem; margin: 0.4em 0; }
h2 { font-size: 1.25rem; margin-top: 2em; border-bottom: 1px solid #ccc; padding-bottom: 4px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
nav { margin: 12px 0; font-size: 0.95rem; }
nav a { margin-right: 14px; }
p.note { margin: 6px 0; }
figure { margin: 16px 0; border: 1px solid #ddd; padding: 8px; break-inside: avoid;
  page-break-inside: avoid; }
figure svg { width: 100%; height: auto; display: block; }
figcaption { font-size: 0.9rem; color: #333; margin-top: 6px; }
figcaption .stamp { display: block; color: #555; font-size: 0.85rem; }
table { border-collapse: collapse; margin: 10px 0 18px; font-size: 0.85rem; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
.scroll { overflow-x: auto; }
footer { margin-top: 32px; font-size: 0.8rem; color: #666; }
@media print {
  nav { display: none; }
  body { max-width: none; padding: 0; }
  h2 { break-after: avoid; page-break-after: avoid; }
  .scroll { overflow: visible; }
  table { break-inside: auto; }
  tr { break-inside: avoid; }
}
"#;

fn table(t: &TableData, out: &mut String) {
    out.push_str("<div class=\"scroll\"><table>");
    out.push_str(&format!(
        "<caption>{}</caption><thead><tr>",
        escape(&t.caption)
    ));
    for h in &t.header {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr></thead><tbody>");
    for r in &t.rows {
        out.push_str("<tr>");
        for c in r {
            out.push_str(&format!("<td>{}</td>", escape(c)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>\n");
}

/// Renders the report as HTML.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str(&format!("<title>{}</title>\n", escape(&r.title)));
    out.push_str(&format!("<style>{CSS}</style>\n</head>\n<body>\n"));
    out.push_str(&format!(
        "<header><h1>{}</h1>\n<dl class=\"facts\">",
        escape(&r.title)
    ));
    for (k, v) in &r.facts {
        out.push_str(&format!("<dt>{}</dt><dd>{}</dd>", escape(k), escape(v)));
    }
    out.push_str("</dl></header>\n<nav>");
    for s in &r.sections {
        out.push_str(&format!(
            "<a href=\"#{}\">{}</a>",
            escape(&s.id),
            escape(&s.title)
        ));
    }
    out.push_str("</nav>\n");
    for s in &r.sections {
        out.push_str(&format!(
            "<section id=\"{}\">\n<h2>{}</h2>\n",
            escape(&s.id),
            escape(&s.title)
        ));
        for n in &s.notes {
            out.push_str(&format!("<p class=\"note\">{}</p>\n", escape(n)));
        }
        for f in &s.figures {
            out.push_str(&format!("<figure id=\"{}\">\n", escape(&f.id)));
            out.push_str(&f.svg);
            out.push_str(&format!(
                "\n<figcaption><strong>{}.</strong> {}<span class=\"stamp\">{}</span></figcaption>\n</figure>\n",
                escape(&f.title),
                escape(&f.caption),
                escape(&f.stamp.line())
            ));
        }
        for t in &s.tables {
            table(t, &mut out);
        }
        out.push_str("</section>\n");
    }
    out.push_str("<footer>Rendered by μLayer Lab reports; self-contained (no scripts, no network).</footer>\n</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("a<b & \"c\">'"),
            "a&lt;b &amp; &quot;c&quot;&gt;&#39;"
        );
    }
}
