//! SVG charts (plotters, SVG backend only).

use std::path::Path;

use plotters::prelude::*;

use crate::common::Res;
use crate::propagation::Results;

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
    RGBColor(127, 127, 127),
];

/// Line chart of named (x, y) series.
pub fn lines(
    path: &Path,
    title: &str,
    x: &str,
    y: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Res<()> {
    let pts = series.iter().flat_map(|(_, s)| s.iter());
    let (mut xmax, mut ymax) = (1e-9_f64, 1e-9_f64);
    for (px, py) in pts {
        xmax = xmax.max(*px);
        ymax = ymax.max(*py);
    }
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax * 1.02, 0.0..ymax * 1.1)?;
    chart.configure_mesh().x_desc(x).y_desc(y).draw()?;
    for (i, (name, s)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(s.iter().copied(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Cumulative distribution of the propagation latencies, one line per
/// (contender, change), on a logarithmic time axis (0 is drawn at 0.05 ms).
pub fn cdf(path: &Path, results: &Results) -> Res<()> {
    const FLOOR: f64 = 0.05;
    let series: Vec<(String, Vec<(f64, f64)>)> = results
        .iter()
        .filter(|(_, _, v)| !v.is_empty())
        .map(|(name, kind, v)| {
            let mut v = v.clone();
            v.sort_by(f64::total_cmp);
            let n = v.len() as f64;
            let pts = v
                .iter()
                .enumerate()
                .map(|(i, x)| (x.max(FLOOR), 100.0 * (i + 1) as f64 / n))
                .collect();
            (format!("{name}: {kind}"), pts)
        })
        .collect();
    let xmax = series
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.0))
        .fold(1.0_f64, f64::max);
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Propagation latency (cumulative share of trials)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((FLOOR..xmax * 1.5).log_scale(), 0.0..100.0)?;
    chart
        .configure_mesh()
        .x_desc("ms from the registry change (log scale; 0 drawn at 0.05)")
        .y_desc("% of trials")
        .draw()?;
    for (i, (name, s)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let style = if i % 2 == 0 {
            color.stroke_width(2)
        } else {
            color.stroke_width(1)
        };
        chart
            .draw_series(LineSeries::new(s.iter().copied(), style))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}
