//! A from × to matrix over the pods of a step (upstream's `TruthTable`, truthtable.go).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::model::PodRef;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruthTable<T> {
    pods: Vec<PodRef>,
    index: BTreeMap<PodRef, usize>,
    cells: Vec<T>,
}

impl<T: Clone> TruthTable<T> {
    /// A table over `pods` (kept in the given order) with every cell set to `fill`.
    pub fn new(pods: Vec<PodRef>, fill: T) -> Self {
        Self::from_fn(pods, |_, _| fill.clone())
    }
}

impl<T> TruthTable<T> {
    /// Builds a table by calling `f(from_index, to_index)` for every cell.
    pub fn from_fn(pods: Vec<PodRef>, mut f: impl FnMut(usize, usize) -> T) -> Self {
        let index = pods
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, p)| (p, i))
            .collect();
        let n = pods.len();
        let mut cells = Vec::with_capacity(n * n);
        for i in 0..n {
            for j in 0..n {
                cells.push(f(i, j));
            }
        }
        TruthTable { pods, index, cells }
    }

    pub fn pods(&self) -> &[PodRef] {
        &self.pods
    }

    pub fn position(&self, pod: &PodRef) -> Option<usize> {
        self.index.get(pod).copied()
    }

    pub fn at(&self, from: usize, to: usize) -> &T {
        &self.cells[from * self.pods.len() + to]
    }

    pub fn at_mut(&mut self, from: usize, to: usize) -> &mut T {
        let n = self.pods.len();
        &mut self.cells[from * n + to]
    }

    pub fn try_get(&self, from: &PodRef, to: &PodRef) -> Option<&T> {
        Some(self.at(self.position(from)?, self.position(to)?))
    }

    /// Sets a cell; returns false when either pod is not on the axes.
    pub fn set(&mut self, from: &PodRef, to: &PodRef, value: T) -> bool {
        match (self.position(from), self.position(to)) {
            (Some(i), Some(j)) => {
                *self.at_mut(i, j) = value;
                true
            }
            _ => false,
        }
    }

    /// The same axes with every cell mapped through `f`.
    pub fn map<U>(&self, f: impl FnMut(&T) -> U) -> TruthTable<U> {
        TruthTable {
            pods: self.pods.clone(),
            index: self.index.clone(),
            cells: self.cells.iter().map(f).collect(),
        }
    }

    /// Every cell as (from, to, value), row by row.
    pub fn iter(&self) -> impl Iterator<Item = (&PodRef, &PodRef, &T)> {
        let n = self.pods.len();
        self.cells
            .iter()
            .enumerate()
            .map(move |(k, v)| (&self.pods[k / n], &self.pods[k % n], v))
    }

    /// Renders with upstream's layout (a header row of destinations, a row per source, one mark
    /// per cell chosen by `mark`), aligned with spaces rather than tabs so it survives JUnit
    /// viewers, HTML and narrow terminals. No trailing spaces, so diffs and snapshots stay clean.
    pub fn render(&self, mut mark: impl FnMut(&T) -> String) -> String {
        let names: Vec<String> = self.pods.iter().map(|p| p.to_string()).collect();
        let w0 = names.iter().map(String::len).max().unwrap_or(1).max(1);
        let mut out = format!("{:w0$}", "-");
        for n in &names {
            let _ = write!(out, " {n}");
        }
        out.push('\n');
        for (i, n) in names.iter().enumerate() {
            let _ = write!(out, "{n:w0$}");
            for (j, col) in names.iter().enumerate() {
                let _ = write!(out, " {:w$}", mark(self.at(i, j)), w = col.len());
            }
            let trimmed = out.trim_end_matches(' ').len();
            out.truncate(trimmed);
            out.push('\n');
        }
        out
    }
}

impl TruthTable<bool> {
    /// Panics if a pod is not on the axes; use [`TruthTable::try_get`] for user-supplied refs.
    pub fn get(&self, from: &PodRef, to: &PodRef) -> bool {
        *self
            .try_get(from, to)
            .unwrap_or_else(|| panic!("{from} -> {to} is not in this table"))
    }

    /// Upstream's legend: `.` allowed, `X` blocked.
    pub fn render_bool(&self) -> String {
        self.render(|b| if *b { ".".into() } else { "X".into() })
    }

    /// Cells where `self` and `other` differ (same axes assumed), as (from, to, self's value).
    pub fn diff(&self, other: &TruthTable<bool>) -> Vec<(PodRef, PodRef, bool)> {
        self.iter()
            .filter_map(|(f, t, v)| {
                let o = other.try_get(f, t)?;
                (o != v).then(|| (f.clone(), t.clone(), *v))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_and_render() {
        let pods = vec![PodRef::new("x", "a"), PodRef::new("x", "b")];
        let mut t = TruthTable::new(pods.clone(), true);
        assert!(t.set(&pods[0], &pods[1], false));
        assert!(!t.set(&PodRef::new("y", "a"), &pods[1], false));
        assert!(!t.get(&pods[0], &pods[1]));
        assert!(t.get(&pods[1], &pods[0]));
        assert_eq!(t.render_bool(), "-   x/a x/b\nx/a .   X\nx/b .   .\n");
        let other = TruthTable::new(pods.clone(), true);
        assert_eq!(
            t.diff(&other),
            vec![(pods[0].clone(), pods[1].clone(), false)]
        );
    }
}
