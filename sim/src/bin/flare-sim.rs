//! Seed sweeps outside the test harness.
//!
//! ```text
//! flare-sim [--seeds N] [--start S] [--seed S] [--jobs J] [--scenario NAME] [--check-determinism K]
//! ```
//!
//! Runs N seeds from S (default 100 from 0) of the swarm, or of a named scenario, in J worker processes (default:
//! the machine's cores; a process runs one simulation at a time, see `run::run`), prints every failure with its
//! replay command, and a summary. `--seed S` replays one seed, prints its statistics and writes its trace.
//! `--check-determinism K` runs every K-th seed a second time and compares the trace hashes. Exits 1 when a seed
//! failed or a trace differed.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use flare_sim::named;
use flare_sim::run::{run, save_trace};

struct Args {
    seeds: u64,
    start: u64,
    one: Option<u64>,
    jobs: u64,
    scenario: String,
    determinism: u64,
    /// Worker mode: run the seeds `i` with `i % jobs == worker` and print result lines.
    worker: Option<u64>,
}

fn main() -> ExitCode {
    let a = parse_args();
    // `RUST_LOG=flare_runtime=debug` prints the daemons' logs (see `flare_sim::acks::collect`).
    if named::scenario(&a.scenario, 0).is_none() {
        usage(&format!(
            "unknown scenario {}; known: {}",
            a.scenario,
            named::NAMES.join(", ")
        ));
    }
    let seeds: Vec<u64> = match a.one {
        Some(s) => vec![s],
        None => (a.start..a.start + a.seeds).collect(),
    };
    if let Some(w) = a.worker {
        worker(&a, &seeds, w);
        return ExitCode::SUCCESS;
    }
    if let Some(seed) = a.one {
        return replay(&a.scenario, seed);
    }
    sweep(&a, &seeds)
}

/// Runs one seed in this process and prints everything about it.
fn replay(scenario: &str, seed: u64) -> ExitCode {
    std::env::set_var("FLARE_SIM_TRACE", "1");
    let r = run(&named::scenario(scenario, seed).expect("checked in main"));
    println!(
        "{}\nops={} sync_acked={} simulated={:?} wall={:?} trace_hash={:016x}",
        r.summary, r.ops, r.sync_acked, r.simulated, r.wall, r.trace_hash
    );
    if let Some(p) = save_trace(&r, scenario) {
        println!("trace: {p}");
    }
    if r.passed() {
        println!("passed");
        ExitCode::SUCCESS
    } else {
        print!("{}", r.failure_text());
        ExitCode::FAILURE
    }
}

/// A worker: runs its share of the seeds, one result line each (and the failure text, indented).
fn worker(a: &Args, seeds: &[u64], w: u64) {
    for (i, seed) in seeds.iter().enumerate() {
        if i as u64 % a.jobs != w {
            continue;
        }
        let s = named::scenario(&a.scenario, *seed).expect("checked in main");
        let r = run(&s);
        let again = (a.determinism > 0 && seed % a.determinism == 0).then(|| run(&s).trace_hash);
        println!(
            "RESULT {} {} {:016x} {} {} {}",
            r.seed,
            u8::from(r.passed()),
            r.trace_hash,
            r.simulated.as_millis(),
            again.map_or("-".to_string(), |h| format!("{h:016x}")),
            r.wall.as_millis()
        );
        if !r.passed() {
            for line in r.failure_text().lines() {
                println!("| {line}");
            }
            if let Some(p) = save_trace(&r, &a.scenario) {
                println!("|   trace: {p}");
            }
        }
    }
}

/// Starts the workers and sums up what they report.
fn sweep(a: &Args, seeds: &[u64]) -> ExitCode {
    let began = Instant::now();
    let exe =
        std::env::current_exe().unwrap_or_else(|e| usage(&format!("cannot find myself: {e}")));
    let mut children = Vec::new();
    for w in 0..a.jobs {
        let child = Command::new(&exe)
            .args([
                "--seeds",
                &a.seeds.to_string(),
                "--start",
                &a.start.to_string(),
            ])
            .args([
                "--scenario",
                &a.scenario,
                "--check-determinism",
                &a.determinism.to_string(),
            ])
            .args(["--jobs", &a.jobs.to_string(), "--worker", &w.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| usage(&format!("cannot start a worker: {e}")));
        children.push(child);
    }
    let (mut ran, mut failed, mut nondeterministic) = (0, Vec::new(), Vec::new());
    let mut simulated = Duration::ZERO;
    let mut slowest = (0u64, 0u64);
    let readers: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().expect("stdout is piped")))
        .collect();
    let lines = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for r in readers {
            let lines = &lines;
            scope.spawn(move || {
                for line in r.lines().map_while(Result::ok) {
                    if line.starts_with('|') {
                        println!("{}", &line[2.min(line.len())..]);
                    }
                    lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
    });
    for mut c in children {
        let _ = c.wait();
    }
    for line in lines.into_inner().unwrap_or_else(|e| e.into_inner()) {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.first() != Some(&"RESULT") || t.len() < 7 {
            continue;
        }
        ran += 1;
        let seed: u64 = t[1].parse().unwrap_or(0);
        let wall: u64 = t[6].parse().unwrap_or(0);
        if wall > slowest.1 {
            slowest = (seed, wall);
        }
        if t[2] != "1" {
            failed.push(seed);
        }
        simulated += Duration::from_millis(t[4].parse().unwrap_or(0));
        if t[5] != "-" && t[5] != t[3] {
            println!(
                "NONDETERMINISTIC seed {seed}: trace hash {} then {}",
                t[3], t[5]
            );
            nondeterministic.push(seed);
        }
    }
    failed.sort_unstable();
    println!(
        "{}: {ran} seeds from {} in {} jobs, {} failed {:?}, {} nondeterministic, {:.1} s wall, {:.0} s simulated, \
         slowest seed {} ({:.1} s)",
        a.scenario,
        a.start,
        a.jobs,
        failed.len(),
        failed,
        nondeterministic.len(),
        began.elapsed().as_secs_f64(),
        simulated.as_secs_f64(),
        slowest.0,
        slowest.1 as f64 / 1000.0
    );
    if ran as u64 != seeds.len() as u64 {
        println!(
            "{} seeds did not report (a worker crashed?)",
            seeds.len() as u64 - ran as u64
        );
        return ExitCode::FAILURE;
    }
    if failed.is_empty() && nondeterministic.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn parse_args() -> Args {
    let mut a = Args {
        seeds: 100,
        start: 0,
        one: None,
        jobs: std::thread::available_parallelism().map_or(2, |n| n.get() as u64),
        scenario: "swarm".into(),
        determinism: 0,
        worker: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let name = args[i].as_str();
        let value = args.get(i + 1).cloned().unwrap_or_default();
        let num = || {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| usage(&format!("{name} needs a number")))
        };
        match name {
            "--seeds" => a.seeds = num(),
            "--start" => a.start = num(),
            "--seed" => a.one = Some(num()),
            "--jobs" => a.jobs = num().max(1),
            "--scenario" => a.scenario = value.clone(),
            "--check-determinism" => a.determinism = num(),
            "--worker" => a.worker = Some(num()),
            other => usage(&format!("unknown argument {other}")),
        }
        i += 2;
    }
    a
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "flare-sim: {msg}\nusage: flare-sim [--seeds N] [--start S] [--seed S] [--jobs J] [--scenario NAME] \
         [--check-determinism K]"
    );
    std::process::exit(2)
}
