//! The exporter's page at `/`: its modules and the last probes, each
//! linked to what it said. Pure; everything shown is escaped (targets
//! come from whoever asked).

use std::fmt::Write;

use super::Done;
use super::config::Config;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page.
pub(super) fn home(config: &Config, recent: &[Done]) -> String {
    let mut page = String::from(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>sonde exporter</title>\
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}\
td,th{padding:2px 12px 2px 0;text-align:left}.fail{color:#b00}</style></head><body>\
<h1>sonde exporter</h1><p><a href=\"/metrics\">Metrics</a> · probe with \
<code>/probe?target=HOST[:PORT]&amp;module=NAME</code> (add <code>&amp;debug=true</code> to see its steps)</p>\
<h2>Modules</h2><table><tr><th>module</th><th>prober</th><th>default port</th></tr>",
    );
    for (name, module) in &config.modules {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            module.prober(),
            module.default_port()
        );
    }
    page.push_str("</table><h2>Last probes</h2><table><tr><th>module</th><th>target</th><th>result</th><th>seconds</th><th>when</th></tr>");
    for done in recent {
        let when = crate::serve::smtp::mailpit::timestamp(done.at);
        let (class, result) = if done.success {
            ("", "success")
        } else {
            ("fail", "failure")
        };
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td class=\"{class}\"><a href=\"/result?id={}\">{result}</a></td><td>{:.3}</td><td>{when}</td></tr>",
            escape(&done.module),
            escape(&done.target),
            done.id,
            done.seconds
        );
    }
    page.push_str("</table></body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_others_typed_is_escaped() {
        let done = Done {
            id: 1,
            module: "rtt".into(),
            target: "<script>x</script>:1".into(),
            success: false,
            seconds: 0.5,
            at: std::time::UNIX_EPOCH,
            text: String::new(),
        };
        let page = home(&Config::default(), &[done]);
        assert!(page.contains("&lt;script&gt;x&lt;/script&gt;:1"));
        assert!(!page.contains("<script>"));
        assert!(page.contains("<td>perf_udp</td>"));
    }
}
