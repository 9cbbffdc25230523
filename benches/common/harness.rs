//! The benchmark harness shared by every bench: contenders measured in interleaved slices
//! (rotating order) over several rounds, tables of median/min/max, weft/peer ratios and
//! verdicts against targets. See benches/README.md for the method.

#![allow(dead_code)]

use std::time::Instant;


#[derive(Clone, Copy, PartialEq)]
pub enum Role {
    Weft,
    Peer,
    Info,
}

pub type Run<'a> = Box<dyn FnMut(f64) -> (f64, Option<f64>) + 'a>;

pub struct Contender<'a> {
    pub name: &'static str,
    pub role: Role,
    pub run: Run<'a>,
    pub samples: Vec<f64>,
    pub extras: Vec<f64>,
}

pub fn contender<'a>(name: &'static str, role: Role, mut run: impl FnMut(f64) -> f64 + 'a) -> Contender<'a> {
    Contender { name, role, run: Box::new(move |s| (run(s), None)), samples: Vec::new(), extras: Vec::new() }
}

/// A contender whose samples also carry hand-offs per 1000 acquisitions.
pub fn contender_h<'a>(name: &'static str, role: Role, mut run: impl FnMut(f64) -> (f64, f64) + 'a) -> Contender<'a> {
    Contender {
        name,
        role,
        run: Box::new(move |s| {
            let (v, h) = run(s);
            (v, Some(h))
        }),
        samples: Vec::new(),
        extras: Vec::new(),
    }
}

#[derive(Clone, Copy)]
pub enum Goal {
    /// weft/peer must be at most this (times: lower is better).
    AtMost(f64),
    /// peer/weft must be at least this (times: weft this many times faster).
    FasterBy(f64),
    /// weft's time must be at most this many ns (an absolute target; `peer` names the peer
    /// shown beside it, whose ratio is for information).
    Under(f64),
}

pub struct Target {
    pub id: &'static str,
    pub what: &'static str,
    pub weft: &'static str,
    pub peer: &'static str,
    pub goal: Goal,
}

pub struct Verdict {
    pub id: &'static str,
    pub what: &'static str,
    pub peer: &'static str,
    pub weft_v: f64,
    pub peer_v: f64,
    /// Median of the per-round ratios weft/peer (peer/weft for FasterBy): the verdict.
    pub ratio: f64,
    /// The same from the medians, for information.
    pub ratio_of_medians: f64,
    pub goal: Goal,
}

impl Verdict {
    pub fn pass(&self) -> bool {
        match self.goal {
            Goal::AtMost(x) => self.ratio <= x,
            Goal::FasterBy(x) => self.ratio >= x,
            Goal::Under(_) => self.ratio <= 1.0,
        }
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

pub fn fmt_ns(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:>9.2} us", v / 1000.0)
    } else {
        format!("{:>9.2} ns", v)
    }
}

pub struct Config {
    pub rounds: usize,
    pub chunks: usize,
    pub scale: f64,
    pub only: Option<String>,
    pub verbose: bool,
}

impl Config {
    /// From the environment: `WEFT_BENCH_ROUNDS` (default 7), `WEFT_BENCH_CHUNKS` (5),
    /// `WEFT_BENCH_SCALE` (1.0), `WEFT_BENCH_ONLY`, `WEFT_BENCH_VERBOSE=1`.
    pub fn from_env() -> Config {
        Config {
            rounds: std::env::var("WEFT_BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(7).max(1),
            chunks: std::env::var("WEFT_BENCH_CHUNKS").ok().and_then(|s| s.parse().ok()).unwrap_or(5).max(1),
            scale: std::env::var("WEFT_BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0),
            only: std::env::var("WEFT_BENCH_ONLY").ok().filter(|s| !s.is_empty()),
            verbose: std::env::var("WEFT_BENCH_VERBOSE").is_ok_and(|v| !v.is_empty() && v != "0"),
        }
    }
}

/// `base` operations scaled by `s`, at least 1.
pub fn scaled(base: f64, s: f64) -> u64 {
    ((base * s).round() as u64).max(1)
}

/// Runs every contender `rounds` times, interleaved, and prints the table and ratios. All
/// values are times (ns per operation; lower is better).
pub fn bench(cfg: &Config, title: &str, detail: &str, mut cs: Vec<Contender>, targets: &[Target]) -> Vec<Verdict> {
    println!();
    println!("== {title} ==");
    println!("   {detail}; {} rounds x {} interleaved slices (rotating order); median of rounds", cfg.rounds, cfg.chunks);
    if let Some(only) = &cfg.only {
        cs.retain(|c| c.name.contains(only.as_str()));
        if cs.is_empty() {
            println!("   (no contender matches WEFT_BENCH_ONLY={only})");
            return Vec::new();
        }
    }
    let t0 = Instant::now();
    for c in cs.iter_mut() {
        (c.run)(cfg.scale * 0.1);
    }
    let k = cs.len();
    for r in 0..cfg.rounds {
        let mut acc = vec![0.0f64; k];
        let mut ext = vec![0.0f64; k];
        let mut has_ext = vec![false; k];
        for chunk in 0..cfg.chunks {
            for j in 0..k {
                let i = (j + r + chunk) % k;
                let (v, e) = (cs[i].run)(cfg.scale / cfg.chunks as f64);
                acc[i] += v;
                if let Some(e) = e {
                    ext[i] += e;
                    has_ext[i] = true;
                }
            }
        }
        let n = cfg.chunks as f64;
        for (i, c) in cs.iter_mut().enumerate() {
            c.samples.push(acc[i] / n);
            if has_ext[i] {
                c.extras.push(ext[i] / n);
            }
        }
    }
    let any_ext = cs.iter().any(|c| !c.extras.is_empty());
    println!(
        "   {:<44} {:>13} {:>13} {:>13}{}",
        "contender (lower is better)",
        "median",
        "min",
        "max",
        if any_ext { "   hand-offs/1000 acq." } else { "" }
    );
    for c in &cs {
        let tag = match c.role {
            Role::Weft => "weft",
            Role::Peer => "peer",
            Role::Info => "info",
        };
        let min = c.samples.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = c.samples.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let ext = if c.extras.is_empty() { String::new() } else { format!("   {:>8.1}", median(&c.extras)) };
        println!(
            "   [{tag}] {:<37} {:>13} {:>13} {:>13}{ext}",
            c.name,
            fmt_ns(median(&c.samples)),
            fmt_ns(min),
            fmt_ns(max)
        );
        if cfg.verbose {
            let all: Vec<String> = c.samples.iter().map(|v| fmt_ns(*v).trim().to_string()).collect();
            println!("          rounds: {}", all.join(", "));
        }
    }
    println!("   ratios weft/peer: median of the per-round ratios (in brackets: median of weft / median of peer)");
    for w in cs.iter().filter(|c| c.role == Role::Weft) {
        for p in cs.iter().filter(|c| c.role != Role::Weft) {
            let paired: Vec<f64> = w.samples.iter().zip(&p.samples).map(|(a, b)| a / b).collect();
            println!(
                "     {:<37} / {:<37} = {:>6.3}x  [{:.3}x]",
                w.name,
                p.name,
                median(&paired),
                median(&w.samples) / median(&p.samples)
            );
        }
    }
    println!("   ({:.1} s)", t0.elapsed().as_secs_f64());
    let find = |n: &str| cs.iter().find(|c| c.name == n);
    targets
        .iter()
        .filter_map(|t| {
            let (w, p) = (find(t.weft)?, find(t.peer)?);
            let (wv, pv) = (median(&w.samples), median(&p.samples));
            let (ratio, ratio_of_medians) = match t.goal {
                Goal::AtMost(_) => {
                    let r: Vec<f64> = w.samples.iter().zip(&p.samples).map(|(a, b)| a / b).collect();
                    (median(&r), wv / pv)
                }
                Goal::FasterBy(_) => {
                    let r: Vec<f64> = w.samples.iter().zip(&p.samples).map(|(a, b)| b / a).collect();
                    (median(&r), pv / wv)
                }
                Goal::Under(limit) => {
                    let r: Vec<f64> = w.samples.iter().map(|a| a / limit).collect();
                    (median(&r), wv / limit)
                }
            };
            Some(Verdict {
                id: t.id,
                what: t.what,
                peer: t.peer,
                weft_v: wv,
                peer_v: pv,
                ratio,
                ratio_of_medians,
                goal: t.goal,
            })
        })
        .collect()
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.trim().to_string()).unwrap_or_default()
}


/// Prints the summary table of the targets.
pub fn print_summary(verdicts: &[Verdict]) {
    println!();
    println!("== Summary: targets (ratio = median of per-round ratios; medians shown) ==");
    for v in verdicts {
        let (goal, shown) = match v.goal {
            Goal::AtMost(x) => (format!("weft/peer <= {x:.2}x"), format!("weft/peer {:>5.3}x [{:.3}x]", v.ratio, v.ratio_of_medians)),
            Goal::FasterBy(x) => (
                format!("peer/weft >= {x:.0}x"),
                format!("weft {:.1}x faster [{:.1}x]", v.ratio, v.ratio_of_medians),
            ),
            Goal::Under(limit) => (
                format!("weft <= {}", fmt_ns(limit).trim()),
                format!("weft/limit {:>5.3}x, weft/peer {:.3}x", v.ratio, v.weft_v / v.peer_v),
            ),
        };
        println!(
            "   {:<2} {:<26} weft {} vs {} {}: {shown} (target {goal})  {}",
            v.id,
            v.what,
            fmt_ns(v.weft_v).trim(),
            v.peer,
            fmt_ns(v.peer_v).trim(),
            if v.pass() { "PASS" } else { "MISS" }
        );
    }
}
