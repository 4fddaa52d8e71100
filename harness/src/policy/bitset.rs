//! A fixed-size set of pod indices, the unit of the oracle's matrix fast path.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BitSet(Vec<u64>);

impl BitSet {
    pub fn empty(n: usize) -> Self {
        BitSet(vec![0; n.div_ceil(64)])
    }

    pub fn full(n: usize) -> Self {
        let mut b = BitSet(vec![u64::MAX; n.div_ceil(64)]);
        if !n.is_multiple_of(64)
            && let Some(last) = b.0.last_mut()
        {
            *last = (1u64 << (n % 64)) - 1;
        }
        b
    }

    pub fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    pub fn remove(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    pub fn set(&mut self, i: usize, on: bool) {
        if on {
            self.insert(i);
        } else {
            self.remove(i);
        }
    }

    pub fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// `self |= other`
    pub fn union_with(&mut self, other: &BitSet) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }

    /// `self |= x & y`
    pub fn union_with_and(&mut self, x: &BitSet, y: &BitSet) {
        for ((a, b), c) in self.0.iter_mut().zip(&x.0).zip(&y.0) {
            *a |= b & c;
        }
    }

    /// `self &= !other`
    pub fn difference_with(&mut self, other: &BitSet) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a &= !b;
        }
    }

    /// `self & other` as a new set.
    pub fn and(&self, other: &BitSet) -> BitSet {
        BitSet(self.0.iter().zip(&other.0).map(|(a, b)| a & b).collect())
    }

    /// `self & !other` within `universe` (the complement is taken inside it).
    pub fn complement_in(&self, universe: &BitSet) -> BitSet {
        BitSet(
            self.0
                .iter()
                .zip(&universe.0)
                .map(|(a, u)| !a & u)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let all = BitSet::full(70);
        assert!(all.contains(69) && !BitSet::empty(70).contains(69));
        let mut a = BitSet::empty(70);
        a.insert(3);
        a.insert(65);
        let none = a.complement_in(&all);
        assert!(!none.contains(3) && none.contains(4) && !none.contains(65) && none.contains(69));
        let mut b = all.clone();
        b.difference_with(&a);
        assert_eq!(b, none);
        assert_eq!(a.and(&none), BitSet::empty(70));
        a.set(3, false);
        assert!(!a.contains(3) && a.contains(65) && !a.is_empty());
    }
}
