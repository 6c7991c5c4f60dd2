//! Running a program to the end from a test: [`run`] for its outcome and text, [`run_ok`] when it must succeed.

use std::process::Command;

/// Runs `cmd` to the end: whether it exited successfully, and its stdout followed by its stderr as text.
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs `cmd` to the end and asserts it exited successfully (the message names the command and shows its stderr);
/// returns its stdout as bytes.
pub fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
