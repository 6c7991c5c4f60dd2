//! Confirmation prompts, worded as flare-tools words them (admin-tool.md §4, the tutorial's transcripts).
//!
//! `--force` (and `--dry-run`, which changes nothing) answers yes without asking. Without them a question needs a
//! terminal on stdin: when there is none (a script, cron, CI), the question is not asked and the subcommand fails at
//! once with [`AdminError::NoTerminal`], instead of reading an empty pipe or hanging on one. `--force` skips the
//! questions only, never the safety checks (admin-tool.md §7).

use std::io::{self, BufRead, IsTerminal, Write};

use super::error::{AdminError, Result};

/// An answer to a `(y/n/a/q/h:help)` question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Do this one.
    Yes,
    /// Skip this one.
    No,
    /// Do this one and every later one without asking.
    All,
    /// Stop here.
    Quit,
}

/// Asks questions on stderr and reads answers from stdin.
pub struct Prompter {
    auto_yes: bool,
    terminal: bool,
    yes_to_all: bool,
    input: Box<dyn BufRead>,
    output: Box<dyn Write>,
}

impl Prompter {
    /// A prompter on the process's stdin/stderr; `auto_yes` for `--force` or `--dry-run`.
    pub fn new(auto_yes: bool) -> Prompter {
        Prompter {
            auto_yes,
            terminal: io::stdin().is_terminal(),
            yes_to_all: false,
            input: Box::new(io::BufReader::new(io::stdin())),
            output: Box::new(io::stderr()),
        }
    }

    /// A prompter on given streams (tests).
    pub fn with_streams(
        auto_yes: bool,
        terminal: bool,
        input: Box<dyn BufRead>,
        output: Box<dyn Write>,
    ) -> Prompter {
        Prompter {
            auto_yes,
            terminal,
            yes_to_all: false,
            input,
            output,
        }
    }

    /// Asks `<question> (y/n): `; true for yes.
    pub fn confirm(&mut self, question: &str) -> Result<bool> {
        if self.auto_yes || self.yes_to_all {
            return Ok(true);
        }
        self.need_terminal(question)?;
        loop {
            let answer = self.ask(&format!("{question} (y/n): "))?;
            match answer.as_deref() {
                None => return Ok(false),
                Some("y" | "yes") => return Ok(true),
                Some("n" | "no") => return Ok(false),
                Some(_) => {}
            }
        }
    }

    /// Asks `<question> (y/n/a/q/h:help): ` (the `reconstruct` form).
    pub fn confirm_each(&mut self, question: &str) -> Result<Answer> {
        if self.auto_yes || self.yes_to_all {
            return Ok(Answer::Yes);
        }
        self.need_terminal(question)?;
        loop {
            let answer = self.ask(&format!("{question} (y/n/a/q/h:help): "))?;
            match answer.as_deref() {
                None | Some("q" | "quit") => return Ok(Answer::Quit),
                Some("y" | "yes") => return Ok(Answer::Yes),
                Some("n" | "no") => return Ok(Answer::No),
                Some("a" | "all") => {
                    self.yes_to_all = true;
                    return Ok(Answer::All);
                }
                Some(_) => {
                    let _ = writeln!(
                        self.output,
                        "y: yes, n: no (skip this node), a: yes to all the rest, q: quit, h: this help"
                    );
                }
            }
        }
    }

    fn need_terminal(&self, question: &str) -> Result<()> {
        if self.terminal {
            Ok(())
        } else {
            Err(AdminError::NoTerminal(question.to_string()))
        }
    }

    /// One answer, trimmed and lower-cased; `None` at end of input.
    fn ask(&mut self, prompt: &str) -> Result<Option<String>> {
        let _ = write!(self.output, "{prompt}");
        let _ = self.output.flush();
        let mut line = String::new();
        match self.input.read_line(&mut line) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(line.trim().to_lowercase())),
            Err(e) => Err(AdminError::Failed(format!(
                "cannot read the answer: {}",
                super::error::reason(&e)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompter(auto_yes: bool, terminal: bool, input: &str) -> Prompter {
        Prompter::with_streams(
            auto_yes,
            terminal,
            Box::new(io::Cursor::new(input.as_bytes().to_vec())),
            Box::new(io::sink()),
        )
    }

    #[test]
    fn force_answers_yes_without_a_terminal() {
        let mut p = prompter(true, false, "");
        assert!(p
            .confirm("making node slave (node=a:1, role=proxy -> slave)")
            .unwrap());
        assert_eq!(p.confirm_each("reconstructing node").unwrap(), Answer::Yes);
    }

    #[test]
    fn no_terminal_and_no_force_refuses_at_once() {
        let mut p = prompter(false, false, "y\n");
        let e = p.confirm("turning node down (node=a:1, state=active -> down)");
        let msg = e.unwrap_err().to_string();
        assert!(msg.starts_with("turning node down (node=a:1, state=active -> down): standard input is not a terminal"), "{msg}");
        assert!(msg.contains("--force"), "{msg}");
    }

    #[test]
    fn answers_are_read_until_they_make_sense() {
        let mut p = prompter(false, true, "maybe\nY\n");
        assert!(p.confirm("q").unwrap());
        let mut p = prompter(false, true, "n\n");
        assert!(!p.confirm("q").unwrap());
        let mut p = prompter(false, true, "");
        assert!(!p.confirm("q").unwrap(), "end of input is no");
        let mut p = prompter(false, true, "h\na\n");
        assert_eq!(p.confirm_each("q").unwrap(), Answer::All);
        assert_eq!(
            p.confirm_each("q").unwrap(),
            Answer::Yes,
            "yes to all the rest"
        );
        let mut p = prompter(false, true, "q\n");
        assert_eq!(p.confirm_each("q").unwrap(), Answer::Quit);
    }
}
