//! What `netpolc cleanup` asks of each provider, and what each answers.
//!
//! The rule every provider follows: a plain cleanup removes only what it can attribute to a
//! *dead* run of the current naming scheme (a run whose lease says its process is gone); a live
//! run is never touched; objects it cannot attribute (no lease: an older netpolc's naming, a run
//! of another user, a kept kind cluster) are left and named. `--run-id ID` removes exactly that
//! run's objects, leased or not, unless the run is live.

use std::time::{Duration, Instant};

/// Which runs a cleanup is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every run whose lease says it is dead.
    DeadRuns,
    /// Exactly this run id (never a run whose id merely starts with it).
    Run(String),
}

impl Target {
    /// Whether run `run` is in scope (exact comparison).
    pub fn includes(&self, run: &str) -> bool {
        match self {
            Target::DeadRuns => true,
            Target::Run(id) => id == run,
        }
    }
}

/// What one provider's cleanup did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// One line per removed object (`netns netpolc-a--s0-node (run a: its process is gone …)`).
    pub removed: Vec<String>,
    /// One line per run or group left alone, with the reason.
    pub left: Vec<String>,
    /// Parts skipped or facts worth saying (`kind` not installed, …).
    pub notes: Vec<String>,
    /// Failures: objects that should have gone and did not.
    pub errors: Vec<String>,
}

impl Report {
    pub fn merge(&mut self, other: Report) {
        self.removed.extend(other.removed);
        self.left.extend(other.left);
        self.notes.extend(other.notes);
        self.errors.extend(other.errors);
    }
}

/// How long a sweep keeps looking for a dead run's objects to appear: a scan must find nothing
/// `quiet_passes` times in a row, `every` apart, within `bound`.
#[derive(Debug, Clone, Copy)]
pub struct Sweep {
    pub every: Duration,
    pub quiet_passes: u32,
    pub bound: Duration,
}

impl Sweep {
    /// For namespaces on this machine: milliseconds to create, so a short watch suffices.
    pub const LOCAL: Sweep = Sweep {
        every: Duration::from_millis(100),
        quiet_passes: 3,
        bound: Duration::from_secs(10),
    };
}

/// Scans and removes until `quiet_passes` scans in a row find nothing, or `bound` passes
/// (`Err` then names what kept appearing). `scan` lists what is present; `remove` removes a batch
/// and returns what it could not remove with why. Returns everything removed.
pub fn sweep_blocking(
    s: Sweep,
    mut scan: impl FnMut() -> Result<Vec<String>, String>,
    mut remove: impl FnMut(&[String]) -> Result<(), String>,
) -> Result<Vec<String>, String> {
    let deadline = Instant::now() + s.bound;
    let mut removed = Vec::new();
    let mut quiet = 0;
    loop {
        let found = scan()?;
        if found.is_empty() {
            quiet += 1;
            if quiet >= s.quiet_passes {
                return Ok(removed);
            }
        } else {
            quiet = 0;
            remove(&found)?;
            for f in found {
                if !removed.contains(&f) {
                    removed.push(f);
                }
            }
        }
        if Instant::now() >= deadline {
            let still = scan()?;
            return if still.is_empty() {
                Ok(removed)
            } else {
                Err(format!(
                    "still appearing after {}s: {}",
                    s.bound.as_secs(),
                    still.join(", ")
                ))
            };
        }
        std::thread::sleep(s.every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const FAST: Sweep = Sweep {
        every: Duration::from_millis(1),
        quiet_passes: 2,
        bound: Duration::from_secs(5),
    };

    #[test]
    fn targets_compare_exactly() {
        assert!(Target::Run("a".into()).includes("a"));
        assert!(!Target::Run("a".into()).includes("a-s1"));
        assert!(!Target::Run("a-s1".into()).includes("a"));
        assert!(Target::DeadRuns.includes("anything"));
    }

    /// Objects that keep appearing for a while (a child still creating them) are all removed,
    /// and the sweep ends only after quiet scans.
    #[test]
    fn sweeps_until_nothing_new_appears() {
        let present = RefCell::new(vec!["n1".to_string()]);
        let arrivals = RefCell::new(vec!["n2", "n3"]);
        let scans = RefCell::new(0);
        let removed = sweep_blocking(
            FAST,
            || {
                *scans.borrow_mut() += 1;
                if let Some(n) = arrivals.borrow_mut().pop() {
                    present.borrow_mut().push(n.to_string());
                }
                Ok(present.borrow().clone())
            },
            |batch| {
                present.borrow_mut().retain(|p| !batch.contains(p));
                Ok(())
            },
        )
        .expect("sweep");
        assert_eq!(removed, vec!["n1", "n3", "n2"]);
        // Two arrivals, then two quiet scans.
        assert!(*scans.borrow() >= 4, "{}", scans.borrow());
    }

    #[test]
    fn a_sweep_is_bounded() {
        let bounded = Sweep {
            bound: Duration::from_millis(30),
            ..FAST
        };
        let mut n = 0;
        let r = sweep_blocking(
            bounded,
            || {
                n += 1;
                Ok(vec![format!("n{n}")])
            },
            |_| Ok(()),
        );
        assert!(
            matches!(r, Err(ref m) if m.contains("still appearing")),
            "{r:?}"
        );
        let failing = sweep_blocking(FAST, || Ok(vec!["x".into()]), |_| Err("EPERM".into()));
        assert_eq!(failing, Err("EPERM".to_string()));
    }
}
