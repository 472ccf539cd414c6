//! The dated time axis of replay plots: ticks at round calendar steps in Beijing time (hours,
//! days, weeks, months, years), as many as fit the axis without their labels overlapping, and
//! labels that carry the year whenever the axis crosses a year boundary (otherwise the year is
//! in the axis caption).

use chrono::{DateTime, Datelike, FixedOffset, TimeZone};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// Beijing time, UTC+8 all year (no daylight saving).
const CST_MS: i64 = 8 * HOUR;

/// Average width of a label character at the plots' tick font, and the gap between labels, px.
const CHAR_PX: f64 = 7.5;
const GAP_PX: f64 = 24.0;

/// Tick times (epoch milliseconds), how to label them, and the axis caption.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeAxis {
    /// Tick times within the span, ascending.
    pub ticks: Vec<i64>,
    /// chrono format of the tick labels (Beijing time).
    pub format: &'static str,
    /// Axis caption: the time zone, and the year when the labels don't show it.
    pub caption: String,
}

impl TimeAxis {
    /// The label of a tick.
    pub fn label(&self, ms: i64) -> String {
        cst(ms).map(|d| d.format(self.format).to_string()).unwrap_or_default()
    }
}

#[derive(Clone, Copy)]
enum Step {
    Hours(i64),
    Days(i64),
    Weeks(i64),
    Months(i32),
}

fn cst(ms: i64) -> Option<DateTime<FixedOffset>> {
    FixedOffset::east_opt(8 * 3600)?.timestamp_millis_opt(ms).single()
}

/// The axis for `[t0, t1]` (epoch milliseconds) drawn `width_px` wide.
pub fn time_axis(t0: i64, t1: i64, width_px: f64) -> TimeAxis {
    let t1 = t1.max(t0 + HOUR);
    let (y0, y1) = (cst(t0).map_or(0, |d| d.year()), cst(t1).map_or(0, |d| d.year()));
    let many_years = y0 != y1;
    let ladder = [
        Step::Hours(1),
        Step::Hours(2),
        Step::Hours(3),
        Step::Hours(6),
        Step::Hours(12),
        Step::Days(1),
        Step::Days(2),
        Step::Weeks(1),
        Step::Weeks(2),
        Step::Months(1),
        Step::Months(2),
        Step::Months(3),
        Step::Months(6),
        Step::Months(12),
        Step::Months(24),
        Step::Months(60),
        Step::Months(120),
    ];
    let mut chosen = None;
    for step in ladder {
        let format = match (step, many_years) {
            (Step::Hours(_), false) => "%m-%d %H:%M",
            (Step::Hours(_), true) => "%Y-%m-%d %H:%M",
            (Step::Days(_) | Step::Weeks(_), false) => "%m-%d",
            (Step::Days(_) | Step::Weeks(_), true) => "%Y-%m-%d",
            (Step::Months(m), _) if m >= 12 => "%Y",
            (Step::Months(_), _) => "%Y-%m",
        };
        let slot = format_width(format) * CHAR_PX + GAP_PX;
        // Cheap upper bound first, so that a decade of data does not list every hour.
        let approx = (t1 - t0) as f64 / approx_len(step) as f64;
        if approx * slot > width_px * 1.5 {
            continue;
        }
        let ticks = ticks(t0, t1, step);
        if ticks.len() as f64 * slot <= width_px {
            chosen = Some((ticks, format));
            break;
        }
    }
    let (mut ticks, format) = chosen.unwrap_or_else(|| (ticks(t0, t1, Step::Months(120)), "%Y"));
    if ticks.is_empty() {
        ticks.push(t0);
    }
    let caption = if format.contains("%Y") {
        "北京时间 Beijing time (UTC+8)".to_string()
    } else {
        format!("{y0} · 北京时间 Beijing time (UTC+8)")
    };
    TimeAxis { ticks, format, caption }
}

/// Label length of a format, in characters (of a sample time).
fn format_width(format: &str) -> f64 {
    cst(1_609_430_399_000).map_or(16, |d| d.format(format).to_string().chars().count()) as f64
}

fn approx_len(step: Step) -> i64 {
    match step {
        Step::Hours(n) => n * HOUR,
        Step::Days(n) => n * DAY,
        Step::Weeks(n) => n * 7 * DAY,
        Step::Months(n) => i64::from(n) * 30 * DAY,
    }
}

/// Round times of `step` in `[t0, t1]`: whole hours divisible by n, midnights, Mondays, first
/// days of months whose number (counted from year 0) is divisible by n — in Beijing time.
fn ticks(t0: i64, t1: i64, step: Step) -> Vec<i64> {
    let mut out = Vec::new();
    match step {
        Step::Hours(_) | Step::Days(_) | Step::Weeks(_) => {
            let (len, phase) = match step {
                Step::Hours(n) => (n * HOUR, 0),
                Step::Days(n) => (n * DAY, 0),
                // 1970-01-01 was a Thursday: Mondays are 4 days later.
                Step::Weeks(n) => (n * 7 * DAY, 4 * DAY),
                Step::Months(_) => unreachable!("handled below"),
            };
            let local0 = t0 + CST_MS - phase;
            let mut t = local0.div_euclid(len) * len + phase - CST_MS;
            if t < t0 {
                t += len;
            }
            while t <= t1 && out.len() < 10_000 {
                out.push(t);
                t += len;
            }
        }
        Step::Months(n) => {
            let Some(start) = cst(t0) else { return out };
            let mut index = start.year() * 12 + start.month0() as i32;
            index = index.div_euclid(n) * n;
            let offset = FixedOffset::east_opt(8 * 3600);
            while out.len() < 10_000 {
                let (y, m) = (index.div_euclid(12), index.rem_euclid(12) as u32 + 1);
                let Some(t) = offset.and_then(|o| o.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()) else { break };
                let t = t.timestamp_millis();
                if t > t1 {
                    break;
                }
                if t >= t0 {
                    out.push(t);
                }
                index += n;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn labels(a: &TimeAxis) -> Vec<String> {
        a.ticks.iter().map(|t| a.label(*t)).collect()
    }

    #[test]
    fn a_flood_of_a_few_weeks_gets_daily_or_weekly_dates_and_the_year_in_the_caption() {
        let a = time_axis(ms("2020-07-01T00:00:00+08:00"), ms("2020-07-25T00:00:00+08:00"), 980.0);
        let l = labels(&a);
        assert_eq!(l.first().map(String::as_str), Some("07-01"), "{l:?}");
        assert!(l.len() >= 8 && l.len() as f64 * (5.0 * CHAR_PX + GAP_PX) <= 980.0, "{l:?}");
        assert!(a.caption.starts_with("2020 ") && a.caption.contains("UTC+8"), "{}", a.caption);
        // Ticks are at Beijing midnight.
        assert!(a.ticks.iter().all(|t| (t + CST_MS) % DAY == 0));
    }

    #[test]
    fn a_span_across_new_year_puts_the_year_in_every_label() {
        let a = time_axis(ms("2020-12-20T00:00:00+08:00"), ms("2021-01-10T00:00:00+08:00"), 980.0);
        let l = labels(&a);
        assert!(l.iter().all(|l| l.starts_with("2020-12-") || l.starts_with("2021-01-")), "{l:?}");
        assert!(l.iter().any(|l| l.starts_with("2021")), "{l:?}");
        let years = time_axis(ms("2019-06-01T00:00:00+08:00"), ms("2021-09-01T00:00:00+08:00"), 980.0);
        let l = labels(&years);
        assert!(l.iter().all(|l| l.starts_with("20")), "{l:?}");
        assert!(l.contains(&"2020-01".to_string()), "months labelled with their year: {l:?}");
    }

    #[test]
    fn labels_never_need_more_room_than_the_axis_has() {
        let t0 = ms("2020-01-01T00:00:00+08:00");
        for (hours, width) in [(6, 300.0), (48, 500.0), (24 * 40, 300.0), (24 * 400, 980.0), (24 * 3650, 400.0)] {
            let a = time_axis(t0, t0 + hours * HOUR, width);
            let room: f64 = a.ticks.iter().map(|t| a.label(*t).chars().count() as f64 * CHAR_PX + GAP_PX).sum();
            assert!(room <= width, "{hours} h on {width} px: {:?}", labels(&a));
            assert!(!a.ticks.is_empty());
        }
    }
}
