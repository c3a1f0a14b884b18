//! The latency CDF of each measured system, drawn with plotters as SVG.

use crate::{BenchError, Result};
use plotters::prelude::*;
use std::path::Path;

/// Points drawn per series: enough for a smooth curve, few enough to keep
/// the SVG small whatever the number of samples.
const POINTS: usize = 1_000;

/// One curve: a label and its latencies in nanoseconds, sorted.
pub struct Series {
    pub label: String,
    pub sorted_ns: Vec<u64>,
}

/// Draws the CDF of each series (latency in ms on a log axis, fraction of
/// messages delivered within it) to `path`, an SVG file.
pub fn cdf(path: &Path, title: &str, series: &[Series]) -> Result<()> {
    let fail = |err: &dyn std::fmt::Display| BenchError::Output {
        path: path.display().to_string(),
        reason: err.to_string(),
    };
    let ms = |ns: u64| (ns as f64 / 1e6).max(0.001);
    let all = series.iter().flat_map(|s| {
        [s.sorted_ns.first(), s.sorted_ns.last()]
            .into_iter()
            .flatten()
    });
    let (low, high) = all.fold((f64::MAX, 0.0f64), |(lo, hi), &ns| {
        (lo.min(ms(ns)), hi.max(ms(ns)))
    });
    let (low, high) = if low <= high {
        (low / 1.5, high * 1.5)
    } else {
        (0.01, 100.0)
    };
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((low..high).log_scale(), 0.0..1.0)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("latency, ms (log scale)")
        .y_desc("fraction delivered within")
        .draw()
        .map_err(|e| fail(&e))?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let n = s.sorted_ns.len();
        let step = (n / POINTS).max(1);
        let points = (0..n)
            .step_by(step)
            .chain((n > 0).then_some(n - 1))
            .map(|k| (ms(s.sorted_ns[k]), (k + 1) as f64 / n as f64));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_curve_per_series_with_its_label() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdf.svg");
        let series = [
            Series {
                label: "fast".into(),
                sorted_ns: (1..=5_000).map(|i| i * 100).collect(),
            },
            Series {
                label: "slow".into(),
                sorted_ns: (1..=10).map(|i| i * 1_000_000).collect(),
            },
        ];
        cdf(&path, "test", &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("fast") && svg.contains("slow"));
        // One polyline per curve and one per legend sample at least.
        assert!(svg.matches("<polyline").count() >= 2, "{svg}");
    }
}
