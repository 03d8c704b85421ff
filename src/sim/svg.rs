//! An SVG plot of coverage per round: one line per trial, the log2 bound marked.

use std::fmt::Write;

use super::report::Report;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// Renders the coverage curves of `report`.
pub fn coverage_plot(report: &Report) -> String {
    let rounds = report
        .trials
        .iter()
        .map(|trial| trial.coverage.len())
        .max()
        .unwrap_or(1)
        .max(report.summary.bound as usize + 1)
        .max(2);
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let x = |round: f64| LEFT + plot_width * round / rounds as f64;
    let y = |coverage: f64| TOP + plot_height * (1.0 - coverage);
    let mut svg = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{} — N={}, fanout {}, {} trials, seed {}: coverage per round</text>"#,
        WIDTH / 2.0,
        escape(&report.scenario.name),
        report.scenario.nodes,
        report.scenario.fanout,
        report.trials.len(),
        report.seed
    );
    for tick in 0..=4 {
        let coverage = f64::from(tick) / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{0}" y1="{1:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{2}" y="{3:.1}" text-anchor="end">{4}%</text>"##,
            WIDTH - RIGHT,
            y(coverage),
            LEFT - 6.0,
            y(coverage) + 4.0,
            tick * 25
        );
    }
    let step = (rounds / 16).max(1);
    for round in (0..=rounds).step_by(step) {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{round}</text>"#,
            x(round as f64),
            HEIGHT - BOTTOM + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">round</text>"#,
        LEFT + plot_width / 2.0,
        HEIGHT - 10.0
    );
    let bound = x(f64::from(report.summary.bound));
    let _ = writeln!(
        svg,
        r##"<line x1="{bound:.1}" x2="{bound:.1}" y1="{TOP}" y2="{}" stroke="#c00" stroke-dasharray="6 4"/><text x="{:.1}" y="{}" fill="#c00">ceil(log2 N) = {}</text>"##,
        HEIGHT - BOTTOM,
        bound + 4.0,
        TOP + 14.0,
        report.summary.bound
    );
    for trial in &report.trials {
        // Round 0: the start, before any exchange.
        let start = trial
            .coverage
            .first()
            .map(|_| initial_coverage(report))
            .unwrap_or(0.0);
        let mut points = format!("{:.1},{:.1}", x(0.0), y(start));
        for (index, coverage) in trial.coverage.iter().enumerate() {
            let _ = write!(points, " {:.1},{:.1}", x((index + 1) as f64), y(*coverage));
        }
        let _ = writeln!(
            svg,
            r##"<polyline points="{points}" fill="none" stroke="#1f5fa8" stroke-opacity="0.45" stroke-width="1.5"/>"##
        );
    }
    let _ = writeln!(
        svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_width}" height="{plot_height}" fill="none" stroke="black"/>"#
    );
    svg.push_str("</svg>\n");
    svg
}

fn initial_coverage(report: &Report) -> f64 {
    match report.scenario.workload {
        super::scenario::Workload::OneAnnouncement => 1.0 / report.scenario.nodes as f64,
        super::scenario::Workload::AllPublish => 1.0 / report.scenario.nodes as f64,
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
