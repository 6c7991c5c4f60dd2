//! Network namespaces for fault tests on real processes (root only; `ip` and `tc` from iproute2).
//!
//! A [`Net`] of `n` hosts is `n` network namespaces, each with one veth interface joined to a bridge in the test's
//! own namespace, so the test's threads reach every host at [`Net::host`] and the hosts reach each other. Host `i`
//! is `10.<s>.0.<i+1>`, the test side `10.<s>.0.254`, with `s` drawn from the test's pid so that concurrent runs
//! do not collide.
//!
//! [`Net::cut`] silences the link between two hosts in both directions and nothing else: each side's egress has an
//! htb class whose queue holds zero packets, and a u32 filter sends the packets addressed to the other side there.
//! Packets vanish as on a broken network: connections time out, nothing is refused or reset. (This machine's
//! kernel has no netem, no drop action and no iptables; an htb class and a zero-length fifo are what it has.)
//! Everything is removed on drop; the daemons in the namespaces must be stopped first (declare the `Net` before
//! them, so it drops after them).

use std::process::{Command, Stdio};

/// Why this test process cannot build namespaces, if it cannot.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces)".into());
    }
    for tool in ["ip", "tc"] {
        if !crate::have(tool) {
            return Some(format!("needs `{tool}` (iproute2)"));
        }
    }
    None
}

/// Hosts in their own network namespaces on one bridge.
pub struct Net {
    tag: u32,
    subnet: u8,
    hosts: usize,
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_quiet(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Net {
    /// Builds `hosts` namespaces on a new bridge (panics when [`unavailable`] says why it cannot).
    pub fn new(hosts: usize) -> Net {
        assert!((1..=200).contains(&hosts));
        if let Some(why) = unavailable() {
            panic!("{why}");
        }
        let tag = std::process::id() % 100_000;
        let net = Net {
            tag,
            subnet: 100 + (tag % 150) as u8,
            hosts,
        };
        let bridge = net.bridge();
        run_quiet(&["ip", "link", "del", &bridge]);
        run(&["ip", "link", "add", &bridge, "type", "bridge"]);
        run(&["ip", "link", "set", &bridge, "up"]);
        let me = format!("10.{}.0.254/24", net.subnet);
        run(&["ip", "addr", "add", &me, "dev", &bridge]);
        for i in 0..hosts {
            let ns = net.ns(i);
            let (outer, inner) = (format!("flv{tag}o{i}"), net.dev(i));
            run_quiet(&["ip", "netns", "del", &ns]);
            run(&["ip", "netns", "add", &ns]);
            run(&[
                "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            run(&["ip", "link", "set", &inner, "netns", &ns]);
            run(&["ip", "link", "set", &outer, "master", &bridge]);
            run(&["ip", "link", "set", &outer, "up"]);
            let addr = format!("{}/24", net.host(i));
            run(&["ip", "-n", &ns, "addr", "add", &addr, "dev", &inner]);
            run(&["ip", "-n", &ns, "link", "set", &inner, "up"]);
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            // Class 1:1 passes everything (the default); class 1:2 drops all it is given.
            let tc = |rest: &[&str]| {
                let mut a = vec!["tc", "-n", &ns];
                a.extend_from_slice(rest);
                run(&a);
            };
            tc(&[
                "qdisc", "add", "dev", &inner, "root", "handle", "1:", "htb", "default", "1",
                "r2q", "100000",
            ]);
            for class in ["1:1", "1:2"] {
                tc(&[
                    "class", "add", "dev", &inner, "parent", "1:", "classid", class, "htb", "rate",
                    "10gbit",
                ]);
            }
            tc(&[
                "qdisc", "add", "dev", &inner, "parent", "1:2", "handle", "20:", "pfifo", "limit",
                "0",
            ]);
        }
        net
    }

    fn bridge(&self) -> String {
        format!("flb{}", self.tag)
    }

    fn dev(&self, i: usize) -> String {
        format!("flv{}i{i}", self.tag)
    }

    /// The namespace of host `i`.
    pub fn ns(&self, i: usize) -> String {
        format!("flare{}h{i}", self.tag)
    }

    /// The address of host `i`.
    pub fn host(&self, i: usize) -> String {
        assert!(i < self.hosts);
        format!("10.{}.0.{}", self.subnet, i + 1)
    }

    fn filter(&self, from: usize, to: usize, add: bool) {
        let (ns, dev) = (self.ns(from), self.dev(from));
        let prio = (10 + to).to_string();
        let dst = format!("{}/32", self.host(to));
        if add {
            run(&[
                "tc", "-n", &ns, "filter", "add", "dev", &dev, "parent", "1:", "protocol", "ip",
                "prio", &prio, "u32", "match", "ip", "dst", &dst, "flowid", "1:2",
            ]);
        } else {
            run(&[
                "tc", "-n", &ns, "filter", "del", "dev", &dev, "parent", "1:", "protocol", "ip",
                "prio", &prio,
            ]);
        }
    }

    /// Silences every packet between hosts `a` and `b`, both ways.
    pub fn cut(&self, a: usize, b: usize) {
        self.filter(a, b, true);
        self.filter(b, a, true);
    }

    /// Undoes [`Net::cut`].
    pub fn heal(&self, a: usize, b: usize) {
        self.filter(a, b, false);
        self.filter(b, a, false);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.hosts {
            run_quiet(&["ip", "netns", "del", &self.ns(i)]);
        }
        run_quiet(&["ip", "link", "del", &self.bridge()]);
    }
}
