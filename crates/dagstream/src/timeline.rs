//! The demo's timeline: commit lag over time per observer, with each
//! observer's mode shaded as a band, mode changes marked, and the
//! committee's hand-offs drawn as vertical lines.
//!
//! plotters draws the chart as SVG; resvg renders the same SVG to PNG with
//! an embedded font (DejaVu Sans, see `assets/DejaVuSans-LICENSE.txt`), so
//! neither needs system fonts or libraries.

use anyhow::{Context, Result};
use dagstream_observer::Mode;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// One observation of one observer.
#[derive(Clone, Debug)]
pub struct Sample {
    pub observer: &'static str,
    /// Seconds since the demo started.
    pub t: f64,
    pub lag: Option<u64>,
    pub mode: Option<Mode>,
    pub paused: bool,
}

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const SIZE: (u32, u32) = (1200, 700);

const LINE_COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
];

fn band_color(mode: Option<Mode>, paused: bool) -> RGBColor {
    match (mode, paused) {
        (None, _) => RGBColor(230, 230, 230),
        (Some(_), true) => RGBColor(160, 160, 160),
        (Some(Mode::BlocksOnly), false) => RGBColor(166, 219, 160),
        (Some(Mode::CommitsOnly), false) => RGBColor(253, 174, 97),
        (Some(Mode::Overlap), false) => RGBColor(171, 217, 233),
    }
}

/// Writes `timeline.svg` and `timeline.png` into `dir`. `boundaries`:
/// when the validator handed over to each new epoch, `(seconds, epoch)`.
pub fn write(dir: &Path, samples: &[Sample], boundaries: &[(f64, u64)]) -> Result<()> {
    let svg = draw(samples, boundaries)?;
    std::fs::write(dir.join("timeline.svg"), &svg)?;
    let png = render_png(&svg)?;
    std::fs::write(dir.join("timeline.png"), png)?;
    Ok(())
}

fn observers(samples: &[Sample]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for sample in samples {
        if !names.contains(&sample.observer) {
            names.push(sample.observer);
        }
    }
    names
}

fn draw(samples: &[Sample], boundaries: &[(f64, u64)]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (top, bottom) = root.split_vertically(SIZE.1 - 200);
        let names = observers(samples);
        let t_max = samples.iter().map(|s| s.t).fold(1.0, f64::max);
        let lag_max = samples
            .iter()
            .filter_map(|s| s.lag)
            .max()
            .unwrap_or(1)
            .max(1) as f64;

        let mut chart = ChartBuilder::on(&top)
            .caption(
                "dagstream demo: commit lag per observer",
                ("sans-serif", 24),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            // Log scale, so that a lag of 10 shows beside one of 1,500;
            // lag + 1 keeps zero on the chart.
            .build_cartesian_2d(0.0..t_max, (1.0..(lag_max + 1.0) * 1.5).log_scale())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("commits behind the validator + 1 (log)")
            .draw()
            .map_err(plot_error)?;
        for (i, name) in names.iter().enumerate() {
            let color = LINE_COLORS[i % LINE_COLORS.len()];
            let points: Vec<(f64, f64)> = samples
                .iter()
                .filter(|s| s.observer == *name)
                .filter_map(|s| s.lag.map(|lag| (s.t, lag as f64 + 1.0)))
                .collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(plot_error)?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            // Mode changes, marked where they happen.
            let mut previous = None;
            for sample in samples.iter().filter(|s| s.observer == *name) {
                let now = (sample.mode, sample.paused);
                if previous.is_some() && previous != Some(now) {
                    let y = sample.lag.unwrap_or(0) as f64 + 1.0;
                    chart
                        .draw_series(std::iter::once(Circle::new(
                            (sample.t, y),
                            5,
                            color.filled(),
                        )))
                        .map_err(plot_error)?;
                }
                previous = Some(now);
            }
        }
        // Each hand-off to a new epoch, where the validator made it.
        let boundary_color = RGBColor(120, 120, 120);
        for &(t, epoch) in boundaries {
            let top = (lag_max + 1.0) * 1.4;
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(t, 1.0), (t, top)],
                    4,
                    3,
                    boundary_color.stroke_width(1),
                ))
                .map_err(plot_error)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("epoch {epoch}"),
                    (t, top),
                    TextStyle::from(("sans-serif", 12).into_font()).color(&boundary_color),
                )))
                .map_err(plot_error)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;

        // One band per observer, shaded by mode.
        let mut bands = ChartBuilder::on(&bottom)
            .margin(15)
            .x_label_area_size(20)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..t_max, 0.0..names.len() as f64)
            .map_err(plot_error)?;
        bands
            .configure_mesh()
            .disable_mesh()
            .disable_y_axis()
            .draw()
            .map_err(plot_error)?;
        for (row, name) in names.iter().enumerate() {
            bands
                .draw_series(std::iter::once(Text::new(
                    name.to_string(),
                    (0.0, row as f64 + 0.5),
                    TextStyle::from(("sans-serif", 13).into_font())
                        .pos(Pos::new(HPos::Right, VPos::Center)),
                )))
                .map_err(plot_error)?;
            let mine: Vec<&Sample> = samples.iter().filter(|s| s.observer == *name).collect();
            for pair in mine.windows(2) {
                let color = band_color(pair[0].mode, pair[0].paused);
                bands
                    .draw_series(std::iter::once(Rectangle::new(
                        [
                            (pair[0].t, row as f64 + 0.15),
                            (pair[1].t, row as f64 + 0.85),
                        ],
                        color.filled(),
                    )))
                    .map_err(plot_error)?;
            }
        }
        let legend = [
            ("BlocksOnly", band_color(Some(Mode::BlocksOnly), false)),
            ("CommitsOnly", band_color(Some(Mode::CommitsOnly), false)),
            ("Overlap", band_color(Some(Mode::Overlap), false)),
            ("paused", band_color(Some(Mode::BlocksOnly), true)),
            ("stopped", band_color(None, false)),
        ];
        for (i, (label, color)) in legend.iter().enumerate() {
            let x = 100 + i as i32 * 150;
            bottom
                .draw(&Rectangle::new([(x, 185), (x + 18, 197)], color.filled()))
                .map_err(plot_error)?;
            bottom
                .draw(&Text::new(*label, (x + 24, 185), ("sans-serif", 14)))
                .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn plot_error<E: std::fmt::Debug>(err: E) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the timeline: {err:?}")
}

fn render_png(svg: &str) -> Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let mut options = usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_font_data(FONT.to_vec());
    fonts.set_sans_serif_family("DejaVu Sans");
    options.font_family = "DejaVu Sans".into();
    let tree = usvg::Tree::from_str(svg, &options).context("the timeline SVG does not parse")?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        tiny_skia::Pixmap::new(size.width(), size.height()).context("the timeline has no size")?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
        .encode_png()
        .context("cannot encode the timeline PNG")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_renders_to_svg_and_png() {
        let mut samples = Vec::new();
        for i in 0..40 {
            let t = i as f64 * 0.25;
            let (mode, lag) = match i {
                0..=4 => (Mode::BlocksOnly, 1_000),
                5..=19 => (Mode::CommitsOnly, 1_000 - i * 50),
                20..=24 => (Mode::Overlap, 5),
                _ => (Mode::BlocksOnly, 0),
            };
            samples.push(Sample {
                observer: "fresh",
                t,
                lag: Some(lag as u64),
                mode: Some(mode),
                paused: false,
            });
            samples.push(Sample {
                observer: "slow",
                t,
                lag: Some(2),
                mode: Some(Mode::BlocksOnly),
                paused: (10..20).contains(&i),
            });
        }
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &samples, &[(3.0, 11), (7.5, 12)]).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("timeline.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("commit lag per observer"));
        assert!(svg.contains(">\nepoch 11\n<") && svg.contains(">\nepoch 12\n<"));
        // plotters writes each label on its own line inside <text>.
        assert!(svg.contains(">\nfresh\n<") && svg.contains(">\nCommitsOnly\n<"));
        let png = std::fs::read(dir.path().join("timeline.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // 1200 x 700, from the PNG header.
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 1200);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 700);
    }
}
