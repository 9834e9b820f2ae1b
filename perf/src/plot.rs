//! SVG plots of the sweeps, drawn with `plotters`' SVG backend only.
//!
//! A figure is a grid of [`Panel`]s, each a line chart of named [`Series`]. The SVG refers to a
//! generic `sans-serif` font and plotters estimates text sizes itself, so drawing needs no font
//! files and no system library. A logarithmic x axis is drawn by plotting log10(x) and labelling the
//! ticks with 10^tick, which keeps one code path for both kinds of axis. A panel with no points
//! says so instead of drawing an empty chart (a sweep against Redis has no round-trip counts).

use std::path::Path;

use plotters::prelude::*;

use crate::BenchError;

/// One line of a panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed, for baselines.
    pub dashed: bool,
}

/// One chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_log: bool,
    pub series: Vec<Series>,
    /// What to say when no series has a point.
    pub empty_note: String,
}

/// Width and height of one panel in pixels.
const PANEL_SIZE: (u32, u32) = (520, 360);

/// Draws `panels` in a grid of `columns` columns under `title` into the SVG file `path`.
pub fn draw_svg(
    path: &Path,
    title: &str,
    panels: &[Panel],
    columns: usize,
) -> Result<(), BenchError> {
    let plot_error = |reason: String| BenchError::Plot {
        path: path.to_owned(),
        reason,
    };
    let columns = columns.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(columns).max(1);
    let size = (
        PANEL_SIZE.0 * columns as u32,
        PANEL_SIZE.1 * rows as u32 + 40,
    );
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_error(e.to_string()))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| plot_error(e.to_string()))?;
    let areas = root.split_evenly((rows, columns));
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(area, panel).map_err(plot_error)?;
    }
    root.present().map_err(|e| plot_error(e.to_string()))?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<(), String> {
    let to_x = |x: f64| {
        if panel.x_log {
            x.max(f64::MIN_POSITIVE).log10()
        } else {
            x
        }
    };
    let points: Vec<(f64, f64)> = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if points.is_empty() {
        let (_, height) = area.dim_in_pixel();
        area.draw(&Text::new(
            panel.title.clone(),
            (20, 20),
            ("sans-serif", 15).into_font(),
        ))
        .map_err(|e| e.to_string())?;
        area.draw(&Text::new(
            panel.empty_note.clone(),
            (20, (height / 2) as i32),
            ("sans-serif", 13)
                .into_font()
                .color(&RGBColor(120, 120, 120)),
        ))
        .map_err(|e| e.to_string())?;
        return Ok(());
    }
    let (x_min, x_max) = span(points.iter().map(|&(x, _)| to_x(x)));
    let (y_min, y_max) = span(points.iter().map(|&(_, y)| y));
    // Ratios and counts read best from zero up.
    let y_low = if y_min >= 0.0 { 0.0 } else { y_min * 1.1 };
    let y_high = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x_min..x_max, y_low..y_high)
        .map_err(|e| e.to_string())?;
    let x_log = panel.x_log;
    // On a log axis, one label per decade lands the ticks on 1, 10, 100, ...
    let x_labels = if x_log {
        ((x_max - x_min).ceil() as usize + 1).clamp(2, 12)
    } else {
        8
    };
    let x_format = move |v: &f64| {
        let x = if x_log { 10f64.powf(*v) } else { *v };
        let rounded = (x * 100.0).round() / 100.0;
        format!("{rounded}")
    };
    chart
        .configure_mesh()
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .x_label_formatter(&x_format)
        .x_labels(x_labels)
        .y_labels(8)
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, series) in panel.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let line: Vec<(f64, f64)> = series
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| (to_x(x), y))
            .collect();
        if line.is_empty() {
            continue;
        }
        let style = color.stroke_width(2);
        let drawn = if series.dashed {
            chart.draw_series(DashedLineSeries::new(line.clone(), 6, 4, style))
        } else {
            chart.draw_series(LineSeries::new(line.clone(), style))
        }
        .map_err(|e| e.to_string())?;
        drawn.label(series.name.as_str()).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
        });
        chart
            .draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The smallest and largest value, widened when they are equal so that the axis has a length.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (min, max) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if min < max {
        (min, max)
    } else {
        let pad = if min == 0.0 { 1.0 } else { min.abs() * 0.1 };
        (min - pad, max + pad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_panels_with_and_without_points() {
        let dir = crate::server::fresh_dir("plot-test").unwrap();
        let path = dir.join("figure.svg");
        let panels = vec![
            Panel {
                title: "round trips per op".into(),
                x_label: "cache budget (% of dataset)".into(),
                y_label: "round trips".into(),
                x_log: true,
                series: vec![
                    Series {
                        name: "dac".into(),
                        points: vec![(1.0, 1.8), (10.0, 1.1), (100.0, 0.2)],
                        dashed: false,
                    },
                    Series {
                        name: "none".into(),
                        points: vec![(1.0, 2.0), (100.0, 2.0)],
                        dashed: true,
                    },
                ],
                empty_note: String::new(),
            },
            Panel {
                title: "throughput".into(),
                x_label: "x".into(),
                y_label: "y".into(),
                x_log: false,
                series: vec![Series {
                    name: "one point".into(),
                    points: vec![(3.0, 1.0)],
                    dashed: false,
                }],
                empty_note: String::new(),
            },
            Panel {
                title: "empty".into(),
                x_label: "x".into(),
                y_label: "y".into(),
                x_log: false,
                series: vec![],
                empty_note: "the target reported no dinomo counters".into(),
            },
        ];
        draw_svg(&path, "cache sweep", &panels, 2).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("dac") && svg.contains("no dinomo counters"));
        assert!(svg.trim_end().ends_with("</svg>"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn spans_have_length() {
        assert_eq!(span([1.0, 3.0].into_iter()), (1.0, 3.0));
        assert_eq!(span([0.0].into_iter()), (-1.0, 1.0));
        let (lo, hi) = span([5.0, 5.0].into_iter());
        assert!(lo < 5.0 && hi > 5.0);
    }
}
