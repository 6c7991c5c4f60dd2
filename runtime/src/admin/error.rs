//! The tool's one error type. Every failure ends as one line on stderr, `flare-admin: <message>`, and exit status 1
//! (admin-tool.md §1: 0 = OK, 1 = NG), so each variant's message names what failed and where.

use std::io;

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The arguments do not make sense (bad `host:port:balance:partition`, unknown node, conflicting options).
    #[error("{0}")]
    Usage(String),
    /// No TCP connection could be made.
    #[error("cannot connect to {what} {addr}: {reason}")]
    Connect {
        /// `index server` or `node`.
        what: &'static str,
        /// `host:port` as given.
        addr: String,
        /// Lower-case reason (`connection refused`, `timed out`, `cannot resolve the name`).
        reason: String,
    },
    /// None of several index servers could be connected to; each is named with its reason.
    #[error("cannot connect to any index server: {0}")]
    NoIndexServer(String),
    /// The connection failed or timed out in the middle of a request.
    #[error("{what} {addr}: {reason}")]
    Io {
        /// `index server` or `node`.
        what: &'static str,
        /// `host:port`.
        addr: String,
        /// Lower-case reason.
        reason: String,
    },
    /// The server answered with an error line (or with something other than the expected `OK`/`STORED`).
    #[error("{what} {addr} refused `{command}`: {reply}")]
    Refused {
        /// `index server` or `node`.
        what: &'static str,
        /// `host:port`.
        addr: String,
        /// The command, without its line ending and data.
        command: String,
        /// The reply line.
        reply: String,
    },
    /// The reply does not follow the protocol (admin-tool.md §2.5, §2.6); the connection is dropped.
    #[error("{what} {addr}: malformed reply: {reason}")]
    Protocol {
        /// `index server` or `node`.
        what: &'static str,
        /// `host:port`.
        addr: String,
        /// What was wrong.
        reason: String,
    },
    /// A change was not confirmed and cannot be: no terminal on stdin and no `--force`.
    #[error("{0}: standard input is not a terminal, so it cannot be confirmed; give --force to run it without confirmation")]
    NoTerminal(String),
    /// A safety check refused the operation (`--unsafe` bypasses some of them).
    #[error("{0}")]
    Unsafe(String),
    /// A local file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The path.
        path: String,
        /// Lower-case reason.
        reason: String,
    },
    /// The operation ran and did not succeed (a build that fell back to proxy, a check that found differences).
    #[error("{0}")]
    Failed(String),
}

/// An `io::Error` as a short lower-case reason, without the `(os error N)` suffix: `connection refused`.
pub fn reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => return "connection refused".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => return "timed out".into(),
        io::ErrorKind::UnexpectedEof => return "connection closed".into(),
        io::ErrorKind::ConnectionReset => return "connection reset".into(),
        _ => {}
    }
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "unknown error".into(),
    }
}

/// Shorthand for subcommand results.
pub type Result<T> = std::result::Result<T, AdminError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_message_reads_like_the_issue_asks() {
        let e = AdminError::Connect {
            what: "index server",
            addr: "127.0.0.1:12120".into(),
            reason: reason(&io::Error::from(io::ErrorKind::ConnectionRefused)),
        };
        assert_eq!(
            e.to_string(),
            "cannot connect to index server 127.0.0.1:12120: connection refused"
        );
    }

    #[test]
    fn os_error_suffix_is_dropped() {
        let e = io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        let r = reason(&e);
        assert!(!r.contains("os error"), "{r}");
        assert!(r.starts_with(|c: char| c.is_lowercase()), "{r}");
    }
}
