//! A copy-on-write array of shared parts, two levels deep: cloning it copies at most
//! [`FAN`] pointers, and changing one part copies that part and one group of pointers. This
//! is what lets a table of ten million keys take a change in microseconds while every
//! snapshot stays immutable.

use std::sync::Arc;

/// Parts per group.
pub const FAN: usize = 64;

pub struct Tree<T> {
    /// Each group's pointers inline after its counts: a read follows one pointer fewer.
    groups: Vec<Arc<[Arc<T>]>>,
    len: usize,
}

impl<T> Clone for Tree<T> {
    fn clone(&self) -> Self {
        Tree {
            groups: self.groups.clone(),
            len: self.len,
        }
    }
}

impl<T> Default for Tree<T> {
    fn default() -> Self {
        Tree {
            groups: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Clone> Tree<T> {
    /// `n` parts made by `make`.
    pub fn from_fn(n: usize, mut make: impl FnMut(usize) -> T) -> Tree<T> {
        let groups = (0..n)
            .step_by(FAN)
            .map(|g| (g..(g + FAN).min(n)).map(|i| Arc::new(make(i))).collect())
            .collect();
        Tree { groups, len: n }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, i: usize) -> &T {
        &self.groups[i / FAN][i % FAN]
    }

    /// The shared part itself, for a reference that outlives this tree.
    pub fn part(&self, i: usize) -> &Arc<T> {
        &self.groups[i / FAN][i % FAN]
    }

    /// Part `i`, copied first if another snapshot shares it.
    pub fn get_mut(&mut self, i: usize) -> &mut T {
        Arc::make_mut(&mut Arc::make_mut(&mut self.groups[i / FAN])[i % FAN])
    }

    /// Adds a part; copies the last group's pointers (a table pushes once per chunk of keys).
    pub fn push(&mut self, part: T) {
        let part = Arc::new(part);
        match self
            .groups
            .last_mut()
            .filter(|_| !self.len.is_multiple_of(FAN))
        {
            Some(g) => *g = g.iter().cloned().chain([part]).collect(),
            None => self.groups.push(Arc::from([part])),
        }
        self.len += 1;
    }

    pub fn last_mut(&mut self) -> Option<&mut T> {
        let n = self.len.checked_sub(1)?;
        Some(self.get_mut(n))
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.groups.iter().flat_map(|g| g.iter().map(|p| &**p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_copies_one_part_and_shares_the_rest() {
        let a: Tree<Vec<u32>> = Tree::from_fn(200, |i| vec![i as u32]);
        let mut b = a.clone();
        b.get_mut(130).push(7);
        assert_eq!(a.get(130), &vec![130]);
        assert_eq!(b.get(130), &vec![130, 7]);
        assert!(Arc::ptr_eq(a.part(0), b.part(0)));
        assert!(Arc::ptr_eq(a.part(129), b.part(129)));
        assert!(!Arc::ptr_eq(a.part(130), b.part(130)));
        // Only the changed part's group of pointers was copied.
        assert!(Arc::ptr_eq(&a.groups[0], &b.groups[0]));
        assert!(!Arc::ptr_eq(&a.groups[2], &b.groups[2]));
        assert_eq!(b.iter().count(), 200);
        b.push(vec![]);
        assert_eq!((a.len(), b.len()), (200, 201));
    }
}
