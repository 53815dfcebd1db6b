//! A Fenwick tree of weights: the weighted draw of the endpoint table.

/// A Fenwick tree of weights: O(log n) update, prefix sum and draw by weight.
#[derive(Debug, Default, Clone)]
pub(crate) struct Fenwick {
    /// 1-based: `tree[i - 1]` holds the sum of the range `(i - lowbit(i), i]`.
    tree: Vec<u64>,
}

// === impl Fenwick ===

impl Fenwick {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.tree.len()
    }

    /// The sum of the first `n` weights.
    pub(crate) fn prefix(&self, mut n: usize) -> u64 {
        let mut sum = 0;
        while n > 0 {
            sum += self.tree[n - 1];
            n &= n - 1;
        }
        sum
    }

    pub(crate) fn total(&self) -> u64 {
        self.prefix(self.tree.len())
    }

    /// Appends a weight.
    pub(crate) fn push(&mut self, weight: u64) {
        let n = self.tree.len() + 1;
        let low = n & n.wrapping_neg();
        // The node covers `(n - low, n]`: the new weight plus `(n - low, n - 1]`.
        let covered = self.prefix(n - 1) - self.prefix(n - low);
        self.tree.push(weight + covered);
    }

    /// Adds `delta` (may be negative, as wrapping) to the weight at `index`.
    pub(crate) fn add(&mut self, index: usize, delta: i64) {
        let mut i = index + 1;
        while i <= self.tree.len() {
            self.tree[i - 1] = self.tree[i - 1].wrapping_add_signed(delta);
            i += i & i.wrapping_neg();
        }
    }

    /// Removes the last weight; it must be zero (set it with [`add`](Self::add)).
    pub(crate) fn pop_zero(&mut self) {
        self.tree.pop();
    }

    /// The index whose weight range contains `target` (`target < total`).
    pub(crate) fn find(&self, mut target: u64) -> usize {
        let mut pos = 0;
        let mut step = self.tree.len().next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next <= self.tree.len() && self.tree[next - 1] <= target {
                pos = next;
                target -= self.tree[next - 1];
            }
            step >>= 1;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fenwick_matches_a_plain_list(
            ops in proptest::collection::vec((0u8..3, 0usize..64, 0u64..1000), 1..200),
        ) {
            let (mut tree, mut list) = (Fenwick::default(), Vec::<u64>::new());
            for (op, at, w) in ops {
                match op {
                    0 => { tree.push(w); list.push(w); }
                    1 if !list.is_empty() => {
                        let i = at % list.len();
                        tree.add(i, w as i64 - list[i] as i64);
                        list[i] = w;
                    }
                    _ if !list.is_empty() => {
                        let last = list.len() - 1;
                        tree.add(last, -(list[last] as i64));
                        tree.pop_zero();
                        list.pop();
                    }
                    _ => {}
                }
                prop_assert_eq!(tree.len(), list.len());
                for n in 0..=list.len() {
                    prop_assert_eq!(tree.prefix(n), list[..n].iter().sum::<u64>());
                }
                let total: u64 = list.iter().sum();
                for target in [0, total / 3, total / 2, total.saturating_sub(1)] {
                    if target < total {
                        let i = tree.find(target);
                        prop_assert!(list[..i].iter().sum::<u64>() <= target);
                        prop_assert!(list[..=i].iter().sum::<u64>() > target);
                    }
                }
            }
        }
    }
}
