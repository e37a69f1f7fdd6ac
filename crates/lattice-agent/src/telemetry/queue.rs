//! [`Queue`]: encoded batches waiting to be sent, oldest first, bounded by their total number
//! of samples. Past the bound the oldest batches are dropped, and the caller counts them.
//! Pure: no clock, no I/O.

use std::collections::VecDeque;

/// One collection, encoded (protobuf `WriteRequest`, uncompressed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedBatch {
    pub timestamp_ms: i64,
    pub samples: usize,
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub struct Queue {
    batches: VecDeque<QueuedBatch>,
    samples: usize,
    max_samples: usize,
}

impl Queue {
    pub fn new(max_samples: usize) -> Self {
        Queue {
            batches: VecDeque::new(),
            samples: 0,
            max_samples,
        }
    }

    /// Samples waiting.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Appends the newest batch; returns the samples dropped to stay within the bound.
    pub fn push(&mut self, batch: QueuedBatch) -> usize {
        self.samples += batch.samples;
        self.batches.push_back(batch);
        self.trim()
    }

    /// Takes the oldest batches, as many as fit in `max_samples` (always at least one when
    /// the queue is not empty).
    pub fn take(&mut self, max_samples: usize) -> Vec<QueuedBatch> {
        let mut out = Vec::new();
        let mut n = 0;
        while let Some(front) = self.batches.front() {
            if !out.is_empty() && n + front.samples > max_samples {
                break;
            }
            n += front.samples;
            if let Some(b) = self.batches.pop_front() {
                self.samples -= b.samples;
                out.push(b);
            }
        }
        out
    }

    /// Puts batches that could not be sent back in front, in their order; returns the samples
    /// dropped to stay within the bound (the oldest go first).
    pub fn put_back(&mut self, batches: Vec<QueuedBatch>) -> usize {
        for b in batches.into_iter().rev() {
            self.samples += b.samples;
            self.batches.push_front(b);
        }
        self.trim()
    }

    fn trim(&mut self) -> usize {
        let mut dropped = 0;
        while self.samples > self.max_samples {
            match self.batches.pop_front() {
                Some(b) => {
                    self.samples -= b.samples;
                    dropped += b.samples;
                }
                None => break,
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(ts: i64, samples: usize) -> QueuedBatch {
        QueuedBatch {
            timestamp_ms: ts,
            samples,
            body: vec![0; samples],
        }
    }

    fn stamps(q: &mut Queue) -> Vec<i64> {
        q.take(usize::MAX)
            .into_iter()
            .map(|b| b.timestamp_ms)
            .collect()
    }

    #[test]
    fn oldest_first_and_bounded_by_samples() {
        let mut q = Queue::new(25);
        assert_eq!(q.push(b(1, 10)), 0);
        assert_eq!(q.push(b(2, 10)), 0);
        assert_eq!(q.samples(), 20);
        // The third batch overflows: the oldest goes.
        assert_eq!(q.push(b(3, 10)), 10);
        assert_eq!(stamps(&mut q), [2, 3]);
        assert_eq!(q.samples(), 0);
    }

    #[test]
    fn take_merges_up_to_the_limit_but_always_one() {
        let mut q = Queue::new(1000);
        for ts in 1..=5 {
            q.push(b(ts, 10));
        }
        let first: Vec<i64> = q.take(25).iter().map(|b| b.timestamp_ms).collect();
        assert_eq!(first, [1, 2]);
        let big: Vec<i64> = q.take(5).iter().map(|b| b.timestamp_ms).collect();
        assert_eq!(big, [3], "one batch even when it alone is over the limit");
        assert_eq!(q.samples(), 20);
        assert!(Queue::new(10).take(10).is_empty());
    }

    #[test]
    fn failed_batches_go_back_in_front_and_overflow_drops_the_oldest() {
        let mut q = Queue::new(30);
        q.push(b(1, 10));
        q.push(b(2, 10));
        let inflight = q.take(20);
        // While the push fails, two newer batches arrive.
        q.push(b(3, 10));
        q.push(b(4, 10));
        assert_eq!(q.put_back(inflight), 10, "batch 1 no longer fits");
        assert_eq!(stamps(&mut q), [2, 3, 4]);
    }
}
