//! One state (model + policies) seen per class: the grouping, the class-level matrices per probe
//! and which policies isolate each class. Shared by the audit report, its findings and what-if.

use std::collections::BTreeMap;

use super::group::{Grouping, Owner};
use crate::model::{Model, PodRef, Probe};
use crate::policy::{CompiledPolicy, Direction, Oracle, PolicyRef};
use crate::truthtable::TruthTable;

/// Which policies select a class, per direction (empty: not isolated in that direction).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Isolation {
    pub ingress: Vec<PolicyRef>,
    pub egress: Vec<PolicyRef>,
}

/// A state analysed per class.
pub struct Analysis<'a> {
    pub model: &'a Model,
    pub policies: &'a [CompiledPolicy],
    pub grouping: Grouping,
    /// One pod per class, keyed by [`super::Class::key`].
    pub class_model: Model,
    pub probes: Vec<Probe>,
    /// Per probe, the class × class matrix (keys: class keys, in class order).
    pub tables: Vec<(Probe, TruthTable<bool>)>,
    /// Per class (same order as `grouping.classes`).
    pub isolation: Vec<Isolation>,
}

/// Policies whose podSelector selects `pod` for `dir`.
pub fn selecting(
    policies: &[CompiledPolicy],
    pod: &crate::model::Pod,
    dir: Direction,
) -> Vec<PolicyRef> {
    policies
        .iter()
        .filter(|p| {
            p.key.namespace == pod.namespace
                && p.rules(dir).is_some()
                && p.pod_selector.matches(&pod.labels)
        })
        .map(|p| p.key.clone())
        .collect()
}

impl<'a> Analysis<'a> {
    /// `probes` empty: every port any pod declares. `owners` overrides the naming heuristics
    /// (live owner references).
    pub fn new(
        model: &'a Model,
        policies: &'a [CompiledPolicy],
        owners: &BTreeMap<PodRef, Owner>,
        probes: &[Probe],
    ) -> Self {
        let grouping = Grouping::for_policies(model, &[policies], owners);
        Self::with_grouping(model, policies, grouping, probes)
    }

    /// As [`Analysis::new`] with a grouping computed elsewhere (what-if groups over both states).
    pub fn with_grouping(
        model: &'a Model,
        policies: &'a [CompiledPolicy],
        grouping: Grouping,
        probes: &[Probe],
    ) -> Self {
        let probes = if probes.is_empty() {
            model.declared_probes()
        } else {
            probes.to_vec()
        };
        let class_model = grouping.class_model(model);
        let oracle = Oracle::new(&class_model, policies);
        let tables = probes.iter().map(|p| (*p, oracle.matrix(*p))).collect();
        let isolation = grouping
            .classes
            .iter()
            .map(|c| match model.pod(c.representative()) {
                Some(rep) => Isolation {
                    ingress: selecting(policies, rep, Direction::Ingress),
                    egress: selecting(policies, rep, Direction::Egress),
                },
                None => Isolation::default(),
            })
            .collect();
        Analysis {
            model,
            policies,
            grouping,
            class_model,
            probes,
            tables,
            isolation,
        }
    }

    /// The class-level answer for `from` → `to` (class indices) on `probe`.
    pub fn allowed(&self, probe_index: usize, from: usize, to: usize) -> bool {
        *self.tables[probe_index].1.at(from, to)
    }

    /// Expands the class matrix of one probe back to every pod pair (what `expect` prints).
    pub fn pod_table(&self, probe_index: usize) -> TruthTable<bool> {
        let refs = self.model.pod_refs();
        let class: Vec<usize> = refs
            .iter()
            .map(|r| self.grouping.class_index(r).unwrap_or(0))
            .collect();
        TruthTable::from_fn(refs, |i, j| self.allowed(probe_index, class[i], class[j]))
    }
}
