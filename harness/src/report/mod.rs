//! Reporters: JSON, JUnit XML, HTML and terminal truth tables, all rendered from one
//! [`RunReport`] so they never disagree.

pub mod diff;
pub mod html;
pub mod model;
pub mod summary;

pub use model::{CellReport, RunReport, ScenarioReport, StepReport, Summary, Verdict};
