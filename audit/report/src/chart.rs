//! The requests-per-day chart: inline SVG drawn by plotters (text as SVG `<text>`, laid out
//! by whatever displays the page, so no font file is read here).
use plotters::prelude::*;

use crate::Error;
use crate::summary::DayRow;

const WIDTH: u32 = 900;
const HEIGHT: u32 = 300;
const REQUESTS: RGBColor = RGBColor(0x2b, 0x5c, 0x8a);
const DENIED: RGBColor = RGBColor(0xb0, 0x30, 0x30);

/// An SVG bar chart of requests and denials per day; `None` when there are no days.
pub(crate) fn requests_per_day(days: &[DayRow]) -> Result<Option<String>, Error> {
    if days.is_empty() {
        return Ok(None);
    }
    let mut svg = String::new();
    draw(days, &mut svg).map_err(Error::Chart)?;
    Ok(Some(svg))
}

fn draw(days: &[DayRow], svg: &mut String) -> Result<(), String> {
    let max = days
        .iter()
        .map(|d| d.requests.max(d.denied))
        .max()
        .unwrap_or(0)
        .max(1);
    // Whole-number ticks with head room above the tallest bar.
    let top = max + max.div_ceil(10);
    let n = days.len();
    // Day i occupies x in [i - 0.5, i + 0.5): requests on its left half, denials on its
    // right; the axis labels the whole numbers plotters picks as key points with their day.
    {
        let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0u64..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n.clamp(2, 12))
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() > 1e-6 || i < 0.0 {
                    return String::new();
                }
                days.get(i as usize)
                    .map_or_else(String::new, |d| d.day.clone())
            })
            .y_desc("records per day")
            .y_label_formatter(&|y| y.to_string())
            .draw()
            .map_err(err)?;
        let bar = |i: usize, from: f64, to: f64, value: u64, color: ShapeStyle| {
            let x = i as f64 - 0.5;
            Rectangle::new([(x + from, 0), (x + to, value)], color)
        };
        chart
            .draw_series(
                days.iter()
                    .enumerate()
                    .map(|(i, d)| bar(i, 0.1, 0.5, d.requests, REQUESTS.filled())),
            )
            .map_err(err)?
            .label("requests")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], REQUESTS.filled()));
        chart
            .draw_series(
                days.iter()
                    .enumerate()
                    .map(|(i, d)| bar(i, 0.5, 0.9, d.denied, DENIED.filled())),
            )
            .map_err(err)?
            .label("denied")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], DENIED.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(())
}

/// Plotters' errors borrow the backend; the message is what is kept.
fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_the_days_as_labels() {
        let days = vec![
            DayRow {
                day: "2026-12-01".into(),
                requests: 7,
                denied: 2,
            },
            DayRow {
                day: "2026-12-02".into(),
                requests: 0,
                denied: 0,
            },
        ];
        let svg = requests_per_day(&days).unwrap().unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("2026-12-01"));
        assert!(svg.contains("<rect"));
        assert!(!svg.contains("http://") || svg.contains("http://www.w3.org/2000/svg"));
        assert_eq!(requests_per_day(&[]).unwrap(), None);
        let one = requests_per_day(&days[..1]).unwrap().unwrap();
        assert!(
            one.contains("2026-12-01"),
            "a single day is labelled: {one}"
        );
    }
}
