//! Applies a scenario's fault plan to the simulation between steps, and heals everything when the fault phase ends.
//!
//! Faults overlap (two episodes may cut the same link), so each kind is counted per link: a link is repaired when
//! the last partition of it ends, not the first. At the end of the fault phase every link is repaired and released,
//! every latency reset, and every crashed host restarted; the run then enters the calm phase.
//!
//! A fault that names [`INDEX_LEADER`] hits the index server the admin saw leading last (`GroupWatch::leader`,
//! a crashed one left out), resolved when the fault starts; the end event that names it (`Restart`, `Repair`,
//! `Release`, `Unslow` with the same other end) undoes the earliest such start still in effect, on the server that
//! start hit. With no leader seen, the start and its end are no-ops. A fault between a host and itself (the leader
//! cut from "every index server", itself among them) is a no-op.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use flare_core::storage::MemoryStorage;

use crate::group_check::{watch_lock, SharedWatch};
use crate::history::{lock, Phase, SharedEnv};
use crate::scenario::{CrashModel, Fault, Scenario, INDEX_LEADER};

/// The fault state of a run.
pub struct FaultDriver {
    plan: Vec<crate::scenario::Timed>,
    next: usize,
    fault_phase: Duration,
    latency_max: Duration,
    crash_model: CrashModel,
    storages: BTreeMap<String, Arc<MemoryStorage>>,
    started: Option<Duration>,
    partitions: BTreeMap<(String, String), u32>,
    holds: BTreeMap<(String, String), u32>,
    slows: BTreeMap<(String, String), u32>,
    crashed: BTreeSet<String>,
    watch: SharedWatch,
    /// (kind of fault, the other end) → the servers that starts naming [`INDEX_LEADER`] hit, oldest first.
    leaders: BTreeMap<(&'static str, String), std::collections::VecDeque<Option<String>>>,
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl FaultDriver {
    /// The driver of `s`'s plan; `storages` are the nodes' engines (a machine crash rolls them back); `watch` tells
    /// which index server leads.
    pub fn new(
        s: &Scenario,
        storages: BTreeMap<String, Arc<MemoryStorage>>,
        watch: SharedWatch,
    ) -> Self {
        FaultDriver {
            plan: s.faults.clone(),
            next: 0,
            fault_phase: s.fault_phase,
            latency_max: Duration::from_millis(s.latency_ms.1),
            crash_model: s.crash_model,
            storages,
            started: None,
            partitions: BTreeMap::new(),
            holds: BTreeMap::new(),
            slows: BTreeMap::new(),
            crashed: BTreeSet::new(),
            watch,
            leaders: BTreeMap::new(),
        }
    }

    /// `fault` with [`INDEX_LEADER`] replaced by the server it hits (see the module docs); `None` when it names the
    /// leader and there is none to hit.
    fn resolve(&mut self, fault: &Fault) -> Option<Fault> {
        let (kind, start, a, b) = match fault {
            Fault::Partition(a, b) => ("partition", true, a, b),
            Fault::Repair(a, b) => ("partition", false, a, b),
            Fault::Hold(a, b) => ("hold", true, a, b),
            Fault::Release(a, b) => ("hold", false, a, b),
            Fault::Slow(a, b, _) => ("slow", true, a, b),
            Fault::Unslow(a, b) => ("slow", false, a, b),
            Fault::Crash(h) => ("crash", true, h, h),
            Fault::Restart(h) => ("crash", false, h, h),
        };
        if a != INDEX_LEADER && b != INDEX_LEADER {
            return Some(fault.clone());
        }
        let other = if a == INDEX_LEADER { b } else { a };
        let key = (kind, other.clone());
        let hit = if start {
            let leader = watch_lock(&self.watch).leader(&self.crashed);
            self.leaders
                .entry(key)
                .or_default()
                .push_back(leader.clone());
            leader
        } else {
            self.leaders
                .get_mut(&key)
                .and_then(|q| q.pop_front())
                .flatten()
        }?;
        let swap = |h: &String| {
            if h == INDEX_LEADER {
                hit.clone()
            } else {
                h.clone()
            }
        };
        Some(match fault {
            Fault::Partition(a, b) => Fault::Partition(swap(a), swap(b)),
            Fault::Repair(a, b) => Fault::Repair(swap(a), swap(b)),
            Fault::Hold(a, b) => Fault::Hold(swap(a), swap(b)),
            Fault::Release(a, b) => Fault::Release(swap(a), swap(b)),
            Fault::Slow(a, b, max) => Fault::Slow(swap(a), swap(b), *max),
            Fault::Unslow(a, b) => Fault::Unslow(swap(a), swap(b)),
            Fault::Crash(h) => Fault::Crash(swap(h)),
            Fault::Restart(h) => Fault::Restart(swap(h)),
        })
    }

    /// Called after every step: applies the faults that are due, and heals at the end of the fault phase.
    pub fn tick(&mut self, sim: &mut turmoil::Sim<'_>, env: &SharedEnv) {
        let phase = lock(env).phase;
        if phase != Phase::Faults {
            return;
        }
        let now = sim.elapsed();
        let started = *self.started.get_or_insert(now);
        let t = now - started;
        while self.next < self.plan.len() && self.plan[self.next].at <= t {
            let fault = self.plan[self.next].fault.clone();
            self.next += 1;
            self.apply(sim, env, &fault, now);
        }
        if t >= self.fault_phase {
            self.heal(sim, env, now);
            lock(env).phase = Phase::Calm;
        }
    }

    fn apply(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        env: &SharedEnv,
        planned: &Fault,
        now: Duration,
    ) {
        let resolved = self.resolve(planned);
        let same_host = matches!(
            &resolved,
            Some(Fault::Partition(a, b) | Fault::Repair(a, b) | Fault::Hold(a, b) | Fault::Release(a, b)
                | Fault::Slow(a, b, _) | Fault::Unslow(a, b)) if a == b
        );
        let applied = match resolved.as_ref().filter(|_| !same_host) {
            None => None,
            Some(fault) => self.apply_resolved(sim, env, fault),
        };
        let mut e = lock(env);
        let hit = match &resolved {
            Some(f) if f != planned => format!(" -> {f:?}"),
            _ => String::new(),
        };
        let line = format!(
            "{} fault {planned:?}{hit}{}",
            now.as_millis(),
            if applied.is_some() { "" } else { " (no-op)" }
        );
        e.trace(line);
    }

    fn apply_resolved(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        env: &SharedEnv,
        fault: &Fault,
    ) -> Option<()> {
        match fault {
            Fault::Partition(a, b) => bump(&mut self.partitions, pair(a, b))
                .then(|| sim.partition(a.as_str(), b.as_str())),
            Fault::Repair(a, b) => drop_one(&mut self.partitions, pair(a, b))
                .then(|| sim.repair(a.as_str(), b.as_str())),
            Fault::Hold(a, b) => {
                bump(&mut self.holds, pair(a, b)).then(|| sim.hold(a.as_str(), b.as_str()))
            }
            Fault::Release(a, b) => {
                drop_one(&mut self.holds, pair(a, b)).then(|| sim.release(a.as_str(), b.as_str()))
            }
            Fault::Slow(a, b, max) => {
                bump(&mut self.slows, pair(a, b));
                sim.set_link_max_message_latency(
                    a.as_str(),
                    b.as_str(),
                    (*max).max(self.latency_max),
                );
                Some(())
            }
            Fault::Unslow(a, b) => drop_one(&mut self.slows, pair(a, b)).then(|| {
                sim.set_link_max_message_latency(a.as_str(), b.as_str(), self.latency_max)
            }),
            Fault::Crash(h) => self
                .crashed
                .insert(h.clone())
                .then(|| self.crash(sim, env, h)),
            Fault::Restart(h) => self.crashed.remove(h).then(|| sim.bounce(h.as_str())),
        }
    }

    fn crash(&mut self, sim: &mut turmoil::Sim<'_>, env: &SharedEnv, host: &str) {
        {
            let mut e = lock(env);
            if let Some((role, targets)) = e.lag_probes.remove(host).map(|p| (p.0)()) {
                let seq = e.next_seq();
                let line = format!(
                    "{} {host} at its crash: {}/{}/{}, replication backlog {}",
                    sim.elapsed().as_millis(),
                    role.0,
                    role.1,
                    role.2,
                    targets
                        .iter()
                        .map(|(t, q, d)| format!("{t}:{q}+{d} dropped"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                e.trace(line);
                e.crash_lags.push(crate::history::CrashLag {
                    host: host.to_string(),
                    seq,
                    role,
                    targets,
                });
            }
        }
        sim.crash(host);
        if self.crash_model == CrashModel::Machine {
            if let Some(storage) = self.storages.get(host) {
                storage.crash();
                let mut e = lock(env);
                let seq = e.next_seq();
                e.machine_crashes.push((host.to_string(), seq));
            }
        }
    }

    fn heal(&mut self, sim: &mut turmoil::Sim<'_>, env: &SharedEnv, now: Duration) {
        for (a, b) in std::mem::take(&mut self.partitions).into_keys() {
            sim.repair(a.as_str(), b.as_str());
        }
        for (a, b) in std::mem::take(&mut self.holds).into_keys() {
            sim.release(a.as_str(), b.as_str());
        }
        for (a, b) in std::mem::take(&mut self.slows).into_keys() {
            sim.set_link_max_message_latency(a.as_str(), b.as_str(), self.latency_max);
        }
        for h in std::mem::take(&mut self.crashed) {
            sim.bounce(h.as_str());
        }
        lock(env).trace(format!("{} healed: calm phase", now.as_millis()));
    }
}

/// Counts one more fault on `k`; true when it is the first (the fault must be applied).
fn bump(m: &mut BTreeMap<(String, String), u32>, k: (String, String)) -> bool {
    let n = m.entry(k).or_insert(0);
    *n += 1;
    *n == 1
}

/// Counts one fault on `k` less; true when it was the last (the fault must be undone).
fn drop_one(m: &mut BTreeMap<(String, String), u32>, k: (String, String)) -> bool {
    match m.get_mut(&k) {
        Some(n) if *n > 1 => {
            *n -= 1;
            false
        }
        Some(_) => {
            m.remove(&k);
            true
        }
        None => false,
    }
}
