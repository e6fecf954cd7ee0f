//! Timing helpers shared by the benchmarks: medians and percentiles of
//! individually timed iterations, printed as a Markdown table.

use std::time::{Duration, Instant};

/// Timings of one benchmark case.
pub struct Sample {
    pub name: String,
    pub times: Vec<Duration>,
}

impl Sample {
    pub fn percentile(&self, p: f64) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        let i = ((t.len() as f64 - 1.0) * p).round() as usize;
        t[i.min(t.len() - 1)]
    }
}

/// Times `iters` calls of `f` (after `warmup` untimed ones).
pub fn time<F: FnMut()>(name: &str, warmup: usize, iters: usize, mut f: F) -> Sample {
    for _ in 0..warmup {
        f();
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        f();
        times.push(start.elapsed());
    }
    Sample {
        name: name.to_string(),
        times,
    }
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

/// Prints a table; the first sample is the baseline for the ratio column.
pub fn table(title: &str, samples: &[Sample]) {
    println!("\n### {title}\n");
    println!("| case | n | median | p90 | p99 | median vs first row |");
    println!("|---|---:|---:|---:|---:|---:|");
    let base = samples[0].percentile(0.5).as_secs_f64();
    for s in samples {
        let median = s.percentile(0.5);
        let ratio = median.as_secs_f64() / base;
        let ratio = if ratio >= 0.1 {
            format!("{ratio:.2}×")
        } else {
            format!("1/{:.0}", 1.0 / ratio)
        };
        println!(
            "| {} | {} | {} | {} | {} | {ratio} |",
            s.name,
            s.times.len(),
            fmt(median),
            fmt(s.percentile(0.9)),
            fmt(s.percentile(0.99)),
        );
    }
}
