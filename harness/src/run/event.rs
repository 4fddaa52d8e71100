//! The run's event stream (nextest's "one event stream, many reporters"): the engine emits events
//! as it goes; the terminal reporter draws from them live, and the file reporters render the final
//! [`RunReport`] the last event carries, so no two outputs can disagree.

use crate::model::Probe;
use crate::provider::PlatformInfo;
use crate::report::model::{CellReport, RunReport, ScenarioReport, StepReport};

/// Something that happened during a run. Scenarios may run concurrently, so events of different
/// scenarios interleave; each names its scenario (`index` in input order and name).
#[derive(Debug, Clone)]
pub enum Event {
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
        cell: CellReport,
    },
    StepFinished {
        scenario: usize,
        scenario_name: String,
        step: usize,
        report: StepReport,
    },
    ScenarioFinished {
        index: usize,
        report: ScenarioReport,
    },
    RunFinished {
        report: Box<RunReport>,
    },
    /// The run is stopping early (signal or provider failure); teardown follows.
    Interrupted {
        reason: String,
    },
}

/// Receives the event stream. Implementations must not block for long: the engine calls them
/// inline.
pub trait Reporter {
    fn event(&mut self, event: &Event);
}

/// Ignores everything.
pub struct NullReporter;

impl Reporter for NullReporter {
    fn event(&mut self, _event: &Event) {}
}

/// Keeps every event (tests, and callers that post-process the stream).
#[derive(Debug, Default)]
pub struct Recorder {
    pub events: Vec<Event>,
}

impl Reporter for Recorder {
    fn event(&mut self, event: &Event) {
        self.events.push(event.clone());
    }
}

/// Forwards every event to several reporters, in order.
#[derive(Default)]
pub struct Fanout<'a> {
    pub reporters: Vec<&'a mut (dyn Reporter + Send)>,
}

impl Reporter for Fanout<'_> {
    fn event(&mut self, event: &Event) {
        for r in &mut self.reporters {
            r.event(event);
        }
    }
}
