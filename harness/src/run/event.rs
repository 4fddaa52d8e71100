//! The run's event stream (nextest's "one event stream, many reporters"): the engine emits events
//! as it goes; the terminal reporter draws from them live, and the file reporters render the final
//! [`RunReport`] the last event carries, so no two outputs can disagree.
//!
//! Events borrow what the engine already holds (cells, step and run reports): at 250,000 cells a
//! clone per event would double the engine's memory for nothing. A reporter that keeps events
//! makes them owned itself ([`Event::to_owned_event`]).

use std::borrow::Cow;

use crate::model::Probe;
use crate::provider::PlatformInfo;
use crate::report::model::{CellReport, RunReport, ScenarioReport, StepReport};

/// Something that happened during a run. Scenarios may run concurrently, so events of different
/// scenarios interleave; each names its scenario (`index` in input order and name).
// Events are built one at a time and handed to reporters by reference, never stored in bulk, so
// the size of the rare `RunFinished` costs nothing worth an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Event<'a> {
    RunStarted {
        run_id: String,
        info: PlatformInfo,
        scenarios: usize,
        /// Cells planned over every step (one pass each).
        cells: usize,
    },
    ScenarioStarted {
        index: usize,
        name: String,
        source: String,
        steps: usize,
    },
    StepStarted {
        scenario: usize,
        scenario_name: String,
        step: usize,
        step_name: String,
        probes: Vec<Probe>,
        cells: usize,
    },
    /// One full pass over a step's matrix ended.
    PassFinished {
        scenario: usize,
        step: usize,
        pass: u32,
        /// Cells whose observation differs from the oracle (errors included, unsupported not).
        mismatches: usize,
        wall_ms: u64,
    },
    /// A cell's final classification (after retries).
    CellFinished {
        scenario: usize,
        step: usize,
        cell: Cow<'a, CellReport>,
    },
    StepFinished {
        scenario: usize,
        scenario_name: String,
        step: usize,
        report: Cow<'a, StepReport>,
    },
    ScenarioFinished {
        index: usize,
        report: Cow<'a, ScenarioReport>,
    },
    RunFinished {
        report: Cow<'a, RunReport>,
    },
    /// The run is stopping early (signal or provider failure); teardown follows.
    Interrupted {
        reason: String,
    },
}

impl Event<'_> {
    /// An owned copy that outlives the engine's data (for reporters that keep events).
    pub fn to_owned_event(&self) -> Event<'static> {
        fn own<T: Clone>(c: &T) -> Cow<'static, T> {
            Cow::Owned(c.clone())
        }
        match self {
            Event::RunStarted {
                run_id,
                info,
                scenarios,
                cells,
            } => Event::RunStarted {
                run_id: run_id.clone(),
                info: info.clone(),
                scenarios: *scenarios,
                cells: *cells,
            },
            Event::ScenarioStarted {
                index,
                name,
                source,
                steps,
            } => Event::ScenarioStarted {
                index: *index,
                name: name.clone(),
                source: source.clone(),
                steps: *steps,
            },
            Event::StepStarted {
                scenario,
                scenario_name,
                step,
                step_name,
                probes,
                cells,
            } => Event::StepStarted {
                scenario: *scenario,
                scenario_name: scenario_name.clone(),
                step: *step,
                step_name: step_name.clone(),
                probes: probes.clone(),
                cells: *cells,
            },
            Event::PassFinished {
                scenario,
                step,
                pass,
                mismatches,
                wall_ms,
            } => Event::PassFinished {
                scenario: *scenario,
                step: *step,
                pass: *pass,
                mismatches: *mismatches,
                wall_ms: *wall_ms,
            },
            Event::CellFinished {
                scenario,
                step,
                cell,
            } => Event::CellFinished {
                scenario: *scenario,
                step: *step,
                cell: own(cell),
            },
            Event::StepFinished {
                scenario,
                scenario_name,
                step,
                report,
            } => Event::StepFinished {
                scenario: *scenario,
                scenario_name: scenario_name.clone(),
                step: *step,
                report: own(report),
            },
            Event::ScenarioFinished { index, report } => Event::ScenarioFinished {
                index: *index,
                report: own(report),
            },
            Event::RunFinished { report } => Event::RunFinished {
                report: own(report),
            },
            Event::Interrupted { reason } => Event::Interrupted {
                reason: reason.clone(),
            },
        }
    }
}

/// Receives the event stream. Implementations must not block for long: the engine calls them
/// inline.
pub trait Reporter {
    fn event(&mut self, event: &Event<'_>);
}

/// Ignores everything.
pub struct NullReporter;

impl Reporter for NullReporter {
    fn event(&mut self, _event: &Event<'_>) {}
}

/// Keeps every event (tests, and callers that post-process the stream).
#[derive(Debug, Default)]
pub struct Recorder {
    pub events: Vec<Event<'static>>,
}

impl Reporter for Recorder {
    fn event(&mut self, event: &Event<'_>) {
        self.events.push(event.to_owned_event());
    }
}

/// Forwards every event to several reporters, in order.
#[derive(Default)]
pub struct Fanout<'a> {
    pub reporters: Vec<&'a mut (dyn Reporter + Send)>,
}

impl Reporter for Fanout<'_> {
    fn event(&mut self, event: &Event<'_>) {
        for r in &mut self.reporters {
            r.event(event);
        }
    }
}
