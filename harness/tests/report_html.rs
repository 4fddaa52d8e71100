//! The HTML report: text content (snapshot), escaping, determinism, self-containment.

mod report_html_common;

use netpol_conformance::report::html;
use report_html_common::{HOSTILE_STEP, all_outcomes};

/// The page's visible text, one block element per line: what a reader sees, minus styling.
/// Drops `<style>`/`<script>` bodies; decodes the entities the renderer produces.
fn text_content(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let after = &rest[lt..];
        let gt = after.find('>').map_or(after.len(), |i| i + 1);
        let tag = &after[..gt];
        let name: String = tag
            .trim_start_matches(['<', '/'])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        rest = &after[gt..];
        if !tag.starts_with("</") && (name == "style" || name == "script") {
            let close = format!("</{name}>");
            rest = rest.find(&close).map_or("", |i| &rest[i + close.len()..]);
            continue;
        }
        match name.as_str() {
            "td" | "th" | "dd" | "dt" => out.push(' '),
            "p" | "li" | "tr" | "h1" | "h2" | "h3" | "h4" | "pre" | "summary" | "section"
            | "div" | "title" | "g" | "br" => out.push('\n'),
            _ => {}
        }
    }
    out.push_str(rest);
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&");
    decoded
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn text_content_snapshot() {
    let html = html::render(&all_outcomes());
    insta::assert_snapshot!(text_content(&html));
}

#[test]
fn rendering_is_deterministic() {
    let r = all_outcomes();
    assert_eq!(html::render(&r), html::render(&r));
}

#[test]
fn markup_in_names_commands_and_warnings_is_escaped() {
    let html = html::render(&all_outcomes());
    for raw in ["<img src=x", "<script>alert(", "<b>bold</b>", "<warning>"] {
        assert!(!html.contains(raw), "unescaped {raw:?} in the page");
    }
    assert!(html.contains("deny-all-ingress-in-x &lt;img src=x onerror=alert(1)&gt;"));
    assert!(text_content(&html).contains(HOSTILE_STEP));
    // Exactly the one script of the page.
    assert_eq!(html.matches("<script").count(), 1);
}

#[test]
fn the_page_references_nothing_outside_itself() {
    let html = html::render(&all_outcomes());
    for needle in [
        "http://",
        "https://",
        "//cdn",
        "@import",
        "url(",
        " src=\"",
        "<link rel=\"stylesheet\"",
    ] {
        let allowed_svg_ns = needle == "http://";
        let hits: Vec<_> = html.match_indices(needle).collect();
        if allowed_svg_ns {
            // The SVG namespace is an identifier, not a fetch.
            assert!(
                html.match_indices(needle)
                    .all(|(i, _)| html[i..].starts_with("http://www.w3.org/2000/svg")),
                "a URL other than the SVG namespace in the page"
            );
        } else {
            assert!(hits.is_empty(), "{needle:?} found in the page");
        }
    }
    assert!(html.contains("Content-Security-Policy"));
    assert!(html.contains("default-src 'none'"));
}

#[test]
fn each_outcome_has_its_own_cell_class() {
    let html = html::render(&all_outcomes());
    for class in [
        "cell pass allowed",
        "cell pass blocked",
        "cell fail blocked",
        "cell fail allowed",
        "cell flaky allowed",
        "cell unsupported",
        "cell error",
    ] {
        assert!(
            html.contains(&format!("class=\"{class}\"")),
            "no {class:?} cell"
        );
    }
}

#[test]
fn an_empty_run_still_renders_a_page() {
    let mut r = all_outcomes();
    r.scenarios[0].steps[0].cells.clear();
    r.scenarios[0].steps.truncate(1);
    let one_empty_step = html::render(&r);
    assert!(one_empty_step.contains("0 cells: "), "step counts shown");
    assert!(
        !one_empty_step.contains("<table class=\"matrix\""),
        "no matrix without cells"
    );
    r.scenarios.clear();
    let none = html::render(&r);
    assert!(none.contains("<h2>Summary</h2>") && none.ends_with("</html>\n"));
    assert!(!none.contains("could not be rendered"));
}

#[test]
fn the_page_says_whether_the_verdict_is_the_expected_one() {
    use netpol_conformance::report::Verdict;
    let mut r = all_outcomes();
    let plain = text_content(&html::render(&r));
    assert!(!plain.contains("This is the expected verdict") && !plain.contains("did not reach it"));

    r.expected_verdict = Some(Verdict::Error);
    let same = text_content(&html::render(&r));
    assert!(
        same.contains("This is the expected verdict (--expect-verdict error)."),
        "{same}"
    );
    r.expected_verdict = Some(Verdict::Conformant);
    let differs = text_content(&html::render(&r));
    assert!(
        differs.contains(
            "Expected conformant (--expect-verdict conformant): the run did not reach it."
        ),
        "{differs}"
    );
}
