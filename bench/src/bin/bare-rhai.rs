//! `bare-rhai FILE [RUNS]`: the ceiling for a script's own speed. Runs the Rhai script in FILE on
//! a bare `rhai::Engine::new()` of the version PiCloud pins (no limits, no sandbox, no context),
//! RUNS times (default 3), and prints each run's milliseconds on one line. `bench.py
//! --script-speed` sets PiCloud's time for the same script beside it.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: bare-rhai FILE [RUNS]");
        return ExitCode::FAILURE;
    };
    let runs: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(3);
    let source = match std::fs::read_to_string(&path) {
        Ok(source) => source,
        Err(err) => {
            eprintln!("cannot read {path}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let engine = rhai::Engine::new();
    let ast = match engine.compile(&source) {
        Ok(ast) => ast,
        Err(err) => {
            eprintln!("{path} does not compile: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        if let Err(err) = engine.eval_ast::<rhai::Dynamic>(&ast) {
            eprintln!("{path} failed: {err}");
            return ExitCode::FAILURE;
        }
        times.push(format!("{:.2}", started.elapsed().as_secs_f64() * 1000.0));
    }
    if writeln!(std::io::stdout().lock(), "{}", times.join(" ")).is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
