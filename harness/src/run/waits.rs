//! How long a step waits for the dataplane to converge.
//!
//! A step whose matrix does not match is probed again and again until it does or the step
//! timeout passes: an honest wait for a CNI that converges slowly. On a CNI that enforces nothing
//! (flannel) no step with a denied cell ever matches, so every such step would wait its whole
//! timeout (60 s on clusters) for nothing: a CI job of an hour. The evidence that tells the two
//! apart is run-wide: a slow enforcer blocks *some* cell the oracle denies sooner or later, a
//! non-enforcer never does. So:
//!
//! - the window opens when the first step expecting a denial whose first pass did not match is
//!   applied (in any scenario; with scenarios running in parallel the window is wall-clock time,
//!   counted once): a step that matched at once has nothing to wait for;
//! - while there is no evidence of enforcement, and the window (by default the step timeout) has
//!   passed, steps stop waiting: they are judged after their first pass plus the usual retries,
//!   and say so (`wait: shortened` in the report, a run warning);
//! - evidence is a cell the oracle denies being refused, or timing out on two passes in a row, or
//!   a pass matching the oracle with at least two denied cells timing out (a lone timeout is a
//!   lost SYN as often as a rule); the first evidence anywhere restores full waits for every step
//!   from then on.
//!
//! The first steps of a run therefore always wait their full timeout, so a dataplane gets at least
//! one whole step timeout to show any enforcement at all.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::report::model::EnforcementReport;

#[derive(Debug)]
pub struct EnforcementWatch {
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the first step that expects a denial was applied.
    since: Option<Instant>,
    /// When a denied cell was first observed blocked.
    seen: Option<Instant>,
    shortened: u64,
}

impl EnforcementWatch {
    pub fn new(window: Duration) -> Self {
        EnforcementWatch {
            window,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A step was applied; `expects_denial`: the oracle denies at least one of its cells.
    pub fn step_applied(&self, expects_denial: bool, at: Instant) {
        if expects_denial {
            let mut s = self.state();
            if s.since.is_none() {
                s.since = Some(at);
            }
        }
    }

    /// A cell the oracle denies was observed blocked: the dataplane enforces something.
    pub fn saw_enforcement(&self, at: Instant) {
        let mut s = self.state();
        if s.seen.is_none() {
            s.seen = Some(at);
        }
    }

    /// Whether a step still waiting may stop now: nothing enforced anywhere, although the
    /// dataplane has had the whole window since the first step that asked for a denial.
    pub fn may_shorten(&self, now: Instant) -> bool {
        let s = self.state();
        s.seen.is_none()
            && s.since
                .is_some_and(|t| now.saturating_duration_since(t) >= self.window)
    }

    /// Counts a step judged with a shortened wait.
    pub fn shortened(&self) {
        self.state().shortened += 1;
    }

    pub fn report(&self) -> EnforcementReport {
        let s = self.state();
        EnforcementReport {
            window_ms: super::ms(self.window),
            first_seen_ms: match (s.since, s.seen) {
                (Some(a), Some(b)) => Some(super::ms(b.saturating_duration_since(a))),
                (None, Some(_)) => Some(0),
                _ => None,
            },
            shortened_steps: s.shortened,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_shorten_only_after_a_whole_window_without_enforcement() {
        let w = EnforcementWatch::new(Duration::from_secs(10));
        let t0 = Instant::now();
        // Steps without denials do not open the window.
        w.step_applied(false, t0);
        assert!(!w.may_shorten(t0 + Duration::from_secs(60)));
        w.step_applied(true, t0 + Duration::from_secs(1));
        assert!(!w.may_shorten(t0 + Duration::from_secs(10)));
        assert!(w.may_shorten(t0 + Duration::from_secs(11)));
        // A later step's apply does not move the window.
        w.step_applied(true, t0 + Duration::from_secs(20));
        assert!(w.may_shorten(t0 + Duration::from_secs(21)));
        // Any enforcement restores full waits for good.
        w.saw_enforcement(t0 + Duration::from_secs(22));
        assert!(!w.may_shorten(t0 + Duration::from_secs(100)));
        w.shortened();
        let r = w.report();
        assert_eq!(
            (r.window_ms, r.first_seen_ms, r.shortened_steps),
            (10_000, Some(21_000), 1)
        );
    }
}
