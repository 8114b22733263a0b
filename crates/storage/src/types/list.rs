//! [`List`]: a double-ended queue of byte strings. Redis 7.0 reports every list as `quicklist`.

use std::collections::VecDeque;

use crate::bytes::SmallBytes;

/// A list value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct List(pub VecDeque<SmallBytes>);

/// An end of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Left,
    Right,
}

impl List {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds an element at an end.
    pub fn push(&mut self, end: End, item: &[u8]) {
        let item = SmallBytes::new(item);
        match end {
            End::Left => self.0.push_front(item),
            End::Right => self.0.push_back(item),
        }
    }

    /// Removes the element at an end.
    pub fn pop(&mut self, end: End) -> Option<SmallBytes> {
        match end {
            End::Left => self.0.pop_front(),
            End::Right => self.0.pop_back(),
        }
    }

    /// Resolves a Redis index (negative from the end) to a position.
    pub fn index(&self, i: i64) -> Option<usize> {
        let len = self.0.len() as i64;
        let i = if i < 0 { len + i } else { i };
        (0..len).contains(&i).then_some(i as usize)
    }

    /// The inclusive range `start..=stop` of Redis indexes, clamped (LRANGE, LTRIM).
    pub fn range(&self, start: i64, stop: i64) -> Option<(usize, usize)> {
        let len = self.0.len() as i64;
        let mut start = if start < 0 { len + start } else { start };
        let mut stop = if stop < 0 { len + stop } else { stop };
        start = start.max(0);
        stop = stop.min(len - 1);
        (start <= stop && start < len).then_some((start as usize, stop as usize))
    }

    /// Approximate bytes allocated.
    pub fn heap_size(&self) -> usize {
        self.0.capacity() * 24 + self.0.iter().map(SmallBytes::heap_size).sum::<usize>()
    }
}
