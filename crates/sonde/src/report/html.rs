//! A page as one self-contained HTML file: uPlot (embedded at build time
//! from its npm package, `vendor/uplot`), the page's charts as JSON for
//! the drawing script, its tables as HTML, and the results it was made
//! from, so the page is also the data. A content security policy lets it
//! load nothing from anywhere.

use serde_json::Value;

use super::page::{Page, Table};

const UPLOT_JS: &str = include_str!("../../vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../vendor/uplot/uPlot.min.css");
const DRAW_JS: &str = include_str!("draw.js");

/// Nothing may be fetched: scripts and styles are inline, images data.
const POLICY: &str =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:";

/// Errors and blocked requests, caught from the page's first line on.
const CATCH: &str = "window.sondeErrors=[];\
window.addEventListener('error',function(e){window.sondeErrors.push(String(e.message||e));});\
document.addEventListener('securitypolicyviolation',function(e){window.sondeErrors.push('blocked '+e.blockedURI);});\
(function(){var f=console.error;console.error=function(){window.sondeErrors.push(Array.prototype.join.call(arguments,' '));f.apply(console,arguments);};})();";

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 auto;padding:0 1rem 2rem;max-width:1400px;color:#222}\
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;font-size:.9rem}dt{color:#666}dd{margin:0;word-break:break-all}\
.chart{width:100%;margin:.5rem 0 1.5rem}.scroll{overflow-x:auto}\
table{border-collapse:collapse;font-size:.85rem;font-variant-numeric:tabular-nums}\
th,td{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:right;white-space:nowrap}\
th:first-child,td:first-child{text-align:left}code{font-size:.85rem}";

/// Text made safe inside HTML elements and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

/// JSON that cannot end the script element it sits in.
fn embedded(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c")
}

/// The whole page; `sources` are the results it was drawn from.
pub fn render(page: &Page, sources: &[Value]) -> String {
    let f = &page.facts;
    let mut body = format!("<h1>{}</h1>\n<dl>", escape(&f.title));
    for (name, value) in [
        ("command", &f.command),
        ("date", &f.date),
        ("this host", &f.local),
        ("peer", &f.remote),
        ("version", &f.version),
        ("peer's version", &f.peer_version),
    ] {
        let shown = if value.is_empty() { "not known" } else { value };
        body.push_str(&format!(
            "<dt>{name}</dt><dd><code>{}</code></dd>",
            escape(shown)
        ));
    }
    body.push_str("</dl>\n");
    for chart in &page.charts {
        body.push_str(&format!(
            "<h2>{}</h2>\n<div class=\"chart\" id=\"chart-{}\"></div>\n",
            escape(&chart.title),
            escape(&chart.id)
        ));
    }
    for table in &page.tables {
        body.push_str(&table_html(table));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"{POLICY}\">\n\
<title>{title}</title>\n<script>{CATCH}</script>\n<style>{UPLOT_CSS}\n{STYLE}</style>\n</head>\n<body>\n{body}\
<pre id=\"sonde-check\" hidden></pre>\n\
<script type=\"application/json\" id=\"sonde-page\">{page_json}</script>\n\
<script type=\"application/json\" id=\"sonde-results\">{results}</script>\n\
<script>{UPLOT_JS}</script>\n<script>{DRAW_JS}</script>\n</body>\n</html>\n",
        title = escape(&f.title),
        page_json = embedded(page),
        results = embedded(&sources),
    )
}

fn table_html(table: &Table) -> String {
    let mut out = format!(
        "<h2>{}</h2>\n<div class=\"scroll\"><table><thead><tr>",
        escape(&table.title)
    );
    for h in &table.head {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr></thead><tbody>");
    for row in &table.rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{}</td>", escape(cell)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::page::{Axis, Chart, Series};
    use sha2::Digest;

    #[test]
    fn the_embedded_uplot_is_the_npm_packages() {
        // SHA-256 of dist/uPlot.iife.min.js and dist/uPlot.min.css in
        // uplot-1.6.32.tgz (vendor/uplot/fetch.sh checks the tarball's).
        let hex = |text: &str| {
            sha2::Sha256::digest(text.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert_eq!(
            hex(UPLOT_JS),
            "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f"
        );
        assert_eq!(
            hex(UPLOT_CSS),
            "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04"
        );
    }

    #[test]
    fn the_page_embeds_everything_and_no_text_escapes_its_element() {
        let mut page = Page::default();
        page.facts.title = "a <b> & 'c'".into();
        let mut chart = Chart::new(
            "t",
            "</script>",
            Axis::linear("t", "s"),
            Axis::linear("y", "u"),
        );
        chart
            .series
            .push(Series::line("</script><x>", vec![(1.0, 2.0)]));
        page.chart(chart);
        let html = render(&page, &[serde_json::json!({"x": "</script>"})]);
        assert_eq!(html.matches("</script>").count(), 5, "only the page's own");
        assert!(html.contains("<h1>a &lt;b&gt; &amp; &#39;c&#39;</h1>"));
        assert!(
            !html.contains(" src="),
            "nothing loaded from a file or host"
        );
        assert!(html.contains("uPlot"));
    }
}
