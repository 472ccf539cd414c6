//! Writes the replay benchmark's input: N water-level stations × D days of 5-minute readings as
//! a time-ordered yearbook-layout CSV (`station,time,level`, Beijing time), with the registry and
//! the full hydrology rule set (four-colour bands on per-station attributes with deadband and
//! on/off delays, a rate-of-rise condition, QARTOD gross range / spike / flat line).
//!
//! ```sh
//! cargo run --release -p riskwatch-replay --example gen-flood -- --stations 1000 --days 365 --out /tmp/flood
//! riskwatch replay --registry /tmp/flood/registry.toml --rules /tmp/flood/rules.toml \
//!     --input /tmp/flood/levels.csv --format yearbook --jobs 2 --quiet
//! ```
//!
//! Deterministic: levels are a seasonal curve, two or three flood waves a year per station at
//! station-specific times and heights (some reach orange or red), a semi-diurnal wobble and a
//! hashed pseudo-noise; about one station in fifty has a gauge stuck for a day.

use std::io::Write;

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.into())
}

fn noise(i: u64, t: u64) -> f64 {
    let mut h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    h ^= h >> 29;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 32;
    (h % 10_000) as f64 / 10_000.0 - 0.5
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let stations: u64 = arg(&args, "--stations", "1000").parse().expect("--stations N");
    let days: u64 = arg(&args, "--days", "365").parse().expect("--days N");
    let out = std::path::PathBuf::from(arg(&args, "--out", "flood-bench"));
    std::fs::create_dir_all(&out)?;
    let mut reg = String::new();
    for i in 0..stations {
        reg += &format!("[[sites]]\nid = \"st{i:04}\"\n");
    }
    for i in 0..stations {
        let base = 20.0 + (i % 17) as f64;
        reg += &format!(
            "[[sensors]]\nid = \"st{i:04}-wl\"\nsite = \"st{i:04}\"\nkind = \"water_level\"\nunit = \"m\"\ninterval_s = 300\n\
             attributes = {{ warning_level = {:.2}, guaranteed_level = {:.2}, record_level = {:.2} }}\n",
            base + 3.0,
            base + 4.2,
            base + 5.0
        );
    }
    std::fs::write(out.join("registry.toml"), reg)?;
    std::fs::write(
        out.join("rules.toml"),
        r#"[[rules]]
id = "water-level"
applies_to = { kind = "water_level" }
deadband = 0.05
on_delay = { samples = 2 }
off_delay = { samples = 3 }
levels = { blue = "warning_level - 0.5", yellow = ["warning_level", "rate(1h) >= 0.3"], orange = "guaranteed_level", red = "record_level" }

[[quality]]
applies_to = { kind = "water_level" }
gross_range = { fail_min = 0.0, fail_max = 80.0 }
spike = { suspect = 0.5, fail = 1.5 }
flat_line = { tolerance = 0.0001, suspect_s = 21600, fail_s = 43200 }
"#,
    )?;
    let file = std::fs::File::create(out.join("levels.csv"))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 22, file);
    writeln!(w, "station,time,level")?;
    // 2020-01-01 00:00 Beijing time.
    let (y0, steps) = (2020, days * 288);
    let mut line = String::with_capacity(64);
    for step in 0..steps {
        let minutes = step * 5;
        let (day, minute_of_day) = (minutes / 1440, minutes % 1440);
        let (month, dom) = month_day(y0, day as u32);
        let stamp = format!("{y0}-{month:02}-{dom:02} {:02}:{:02}", minute_of_day / 60, minute_of_day % 60);
        let t_days = minutes as f64 / 1440.0;
        for i in 0..stations {
            let base = 20.0 + (i % 17) as f64;
            let season = 1.2 * (std::f64::consts::TAU * (t_days - 100.0) / 365.0).sin().max(-0.6);
            let mut wave = 0.0;
            for k in 0..3u64 {
                let centre = 120.0 + 70.0 * k as f64 + (i * 37 + k * 11) as f64 % 40.0;
                let height = 2.2 + ((i * 7 + k * 3) % 10) as f64 * 0.3;
                let width = 3.0 + ((i + k) % 5) as f64;
                wave += height * (-((t_days - centre) / width).powi(2)).exp();
            }
            let wobble = 0.05 * (std::f64::consts::TAU * t_days * 1.93).sin();
            let mut level = base + season + wave + wobble + 0.01 * noise(i, step);
            if i % 50 == 7 && (200 * 288..201 * 288).contains(&step) {
                level = base + 0.5; // a stuck gauge for a day
            }
            line.clear();
            use std::fmt::Write as _;
            let _ = writeln!(line, "st{i:04},{stamp},{level:.2}");
            w.write_all(line.as_bytes())?;
        }
    }
    w.flush()?;
    println!(
        "{} readings for {stations} stations × {days} days in {}",
        steps * stations,
        out.join("levels.csv").display()
    );
    Ok(())
}

fn month_day(year: u32, day_of_year: u32) -> (u32, u32) {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let lens = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut d = day_of_year;
    for (m, len) in lens.iter().enumerate() {
        if d < *len {
            return (m as u32 + 1, d + 1);
        }
        d -= len;
    }
    (12, 31)
}
