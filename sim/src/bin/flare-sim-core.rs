//! The core-level cluster simulator (`flare_sim::coresim`): many seeds, in parallel threads.
//!
//!   flare-sim-core --seed S                       one seed, its failures and trace hash
//!   flare-sim-core --seeds N [--start S] [--jobs J] [--check-determinism K] [--scenario NAME]
//!
//! `--scenario NAME` runs a named scenario of `flare_sim::named` instead of the core swarm.
//!
//! A sweep prints every failed seed with its replay line, then `<seeds/s line>` and `N passed, N failed`; every
//! K-th seed (default 10) is run twice and its trace hashes compared. Exits 1 when a seed failed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use flare_sim::coresim::{run, scenario, CoreReport};

fn arg(args: &[String], name: &str) -> Option<u64> {
    let i = args.iter().position(|a| a == name)?;
    let v = args.get(i + 1)?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name} takes a number, not {v:?}")),
    )
}

fn show(r: &CoreReport) -> String {
    let mut out = format!(
        "seed {} FAILED ({} events, {} ops, {} ms simulated)\n",
        r.scenario.seed, r.events, r.ops, r.sim_ms
    );
    for f in r.failures.iter().take(5) {
        out.push_str(&format!(
            "  {}: {}\n",
            f.checker,
            f.detail.chars().take(600).collect::<String>()
        ));
    }
    out.push_str(&format!("  replay: {}\n", r.replay_line()));
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .without_time()
            .init();
    }
    let named = args
        .iter()
        .position(|a| a == "--scenario")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let make = |seed: u64| match &named {
        Some(name) => flare_sim::named::scenario(name, seed)
            .unwrap_or_else(|| panic!("no scenario named {name:?}")),
        None => scenario(seed),
    };
    if let Some(seed) = arg(&args, "--seed") {
        let r = run(&make(seed));
        println!(
            "seed {seed}: {} ({} events, {} ops, {} ms simulated, trace {:016x})",
            if r.passed() { "passed" } else { "FAILED" },
            r.events,
            r.ops,
            r.sim_ms,
            r.trace_hash
        );
        if !r.passed() {
            print!("{}", show(&r));
            std::process::exit(1);
        }
        return;
    }
    let n = arg(&args, "--seeds").unwrap_or(100);
    let start = arg(&args, "--start").unwrap_or(0);
    let jobs = arg(&args, "--jobs")
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |p| p.get() as u64))
        .max(1);
    let every = arg(&args, "--check-determinism").unwrap_or(10);
    let next = AtomicU64::new(start);
    let failed = Mutex::new(Vec::new());
    let nondeterministic = Mutex::new(Vec::new());
    let sim_ms = AtomicU64::new(0);
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= start + n {
                    return;
                }
                let s = make(seed);
                let r = run(&s);
                sim_ms.fetch_add(r.sim_ms, Ordering::Relaxed);
                if every > 0 && seed.is_multiple_of(every) {
                    let again = run(&s);
                    if again.trace_hash != r.trace_hash {
                        println!(
                            "seed {seed} NONDETERMINISTIC: trace {:016x} then {:016x}",
                            r.trace_hash, again.trace_hash
                        );
                        nondeterministic.lock().unwrap().push(seed);
                    }
                }
                if !r.passed() {
                    print!("{}", show(&r));
                    failed.lock().unwrap().push(seed);
                }
            });
        }
    });
    let wall = t0.elapsed();
    let failed = failed.into_inner().unwrap();
    let nondet = nondeterministic.into_inner().unwrap();
    println!(
        "{n} seeds from {start} in {:.1} s on {jobs} threads: {:.1} seeds/s, {:.0} s simulated; determinism checked every {every}th seed: {} nondeterministic",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        sim_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        nondet.len()
    );
    let bad = failed.len() + nondet.len();
    println!(
        "{} passed, {} failed",
        n as usize - failed.len(),
        failed.len()
    );
    if bad > 0 {
        std::process::exit(1);
    }
}
