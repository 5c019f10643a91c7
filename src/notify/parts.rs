//! [`PartSizes`]: the size of each part uploaded through the layer, per
//! multipart upload, so a completion event can carry the object's size.
//!
//! S3 answers CompleteMultipartUpload with an ETag but no size. The parts
//! went up through this layer (usually), so their sum is the size, as long
//! as every part the completion lists was seen. The map is bounded: at most
//! [`MAX_UPLOADS`] uploads and [`MAX_TRACKED_PARTS`] parts in all, the
//! oldest upload evicted first (its completion then has no size, or the one
//! a [`SizeLookup`](super::SizeLookup) finds).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Most multipart uploads tracked at once.
pub(super) const MAX_UPLOADS: usize = 10_000;
/// Most parts tracked over all uploads (16 bytes each, plus map overhead).
pub(super) const MAX_TRACKED_PARTS: usize = 200_000;

/// Identifies one upload: bucket, key and upload id.
pub(crate) type UploadKey = (String, String, String);

#[derive(Default)]
struct State {
    uploads: HashMap<UploadKey, Upload>,
    /// Uploads by first sight, oldest first; entries of removed uploads are
    /// skipped (and compacted away) lazily.
    order: VecDeque<(UploadKey, u64)>,
    next_generation: u64,
    parts: usize,
}

struct Upload {
    generation: u64,
    /// Part number -> size, `None` when the part's size was unknown.
    sizes: HashMap<u32, Option<u64>>,
}

/// Part sizes of multipart uploads in progress, shared by the services of
/// one layer.
#[derive(Default)]
pub(crate) struct PartSizes {
    state: Mutex<State>,
}

impl PartSizes {
    /// Records that part `number` of `upload` was uploaded with `size`
    /// bytes (a part sent again replaces the earlier one, as in S3).
    pub(crate) fn record(&self, upload: UploadKey, number: u32, size: Option<u64>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *state;
        if !state.uploads.contains_key(&upload) {
            let generation = state.next_generation;
            state.next_generation += 1;
            state.order.push_back((upload.clone(), generation));
            state.uploads.insert(
                upload.clone(),
                Upload {
                    generation,
                    sizes: HashMap::new(),
                },
            );
        }
        let entry = state.uploads.get_mut(&upload).expect("inserted above");
        if entry.sizes.insert(number, size).is_none() {
            state.parts += 1;
        }
        while state.uploads.len() > MAX_UPLOADS || state.parts > MAX_TRACKED_PARTS {
            if !state.evict_oldest(&upload) {
                break;
            }
        }
        if state.order.len() > 2 * MAX_UPLOADS {
            let uploads = &state.uploads;
            state.order.retain(|(key, generation)| {
                uploads
                    .get(key)
                    .is_some_and(|u| u.generation == *generation)
            });
        }
    }

    /// Forgets `upload` (aborted, or completed) and returns the sum of
    /// `listed` parts when every one of them was seen with a known size.
    pub(crate) fn take(&self, upload: &UploadKey, listed: Option<&[u32]>) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let removed = state.uploads.remove(upload)?;
        state.parts -= removed.sizes.len();
        let listed = listed?;
        if listed.is_empty() {
            return None;
        }
        listed.iter().try_fold(0u64, |sum, number| {
            let size = (*removed.sizes.get(number)?)?;
            sum.checked_add(size)
        })
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap();
        (state.uploads.len(), state.parts)
    }
}

impl State {
    /// Drops the oldest upload other than `keep`; `false` if there is none.
    fn evict_oldest(&mut self, keep: &UploadKey) -> bool {
        let mut skipped = None;
        while let Some((key, generation)) = self.order.pop_front() {
            let live = self
                .uploads
                .get(&key)
                .is_some_and(|u| u.generation == generation);
            if !live {
                continue;
            }
            if &key == keep {
                skipped = Some((key, generation));
                continue;
            }
            if let Some(upload) = self.uploads.remove(&key) {
                self.parts -= upload.sizes.len();
            }
            if let Some(kept) = skipped {
                self.order.push_front(kept);
            }
            return true;
        }
        if let Some(kept) = skipped {
            self.order.push_front(kept);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> UploadKey {
        ("b".into(), format!("k{n}"), format!("u{n}"))
    }

    #[test]
    fn sum_of_the_listed_parts() {
        let parts = PartSizes::default();
        parts.record(key(1), 1, Some(5 << 20));
        parts.record(key(1), 2, Some(100));
        parts.record(key(1), 2, Some(7));
        parts.record(key(1), 3, Some(1));
        assert_eq!(parts.take(&key(1), Some(&[1, 2])), Some((5 << 20) + 7));
        assert_eq!(parts.len(), (0, 0), "completion forgets the upload");
        assert_eq!(parts.take(&key(1), Some(&[1])), None);

        parts.record(key(2), 1, Some(1));
        assert_eq!(parts.take(&key(2), Some(&[1, 2])), None, "part 2 unseen");
        parts.record(key(3), 1, None);
        assert_eq!(parts.take(&key(3), Some(&[1])), None, "size unknown");
        parts.record(key(4), 1, Some(1));
        assert_eq!(parts.take(&key(4), None), None, "list unknown");
        assert_eq!(parts.len(), (0, 0));
    }

    #[test]
    fn bounded_by_uploads_and_parts_oldest_first() {
        let parts = PartSizes::default();
        for n in 0..MAX_UPLOADS + 5 {
            parts.record(key(n), 1, Some(1));
        }
        assert_eq!(parts.len(), (MAX_UPLOADS, MAX_UPLOADS));
        assert_eq!(parts.take(&key(0), Some(&[1])), None, "evicted");
        assert_eq!(parts.take(&key(MAX_UPLOADS + 4), Some(&[1])), Some(1));

        let parts = PartSizes::default();
        for number in 1..=10_000 {
            parts.record(key(1), number, Some(1));
        }
        for n in 2..=(MAX_TRACKED_PARTS / 10_000) + 1 {
            for number in 1..=10_000 {
                parts.record(key(n), number, Some(1));
            }
        }
        let (uploads, total) = parts.len();
        assert!(total <= MAX_TRACKED_PARTS, "{total}");
        assert_eq!(uploads, MAX_TRACKED_PARTS / 10_000);
        assert_eq!(parts.take(&key(1), Some(&[1])), None, "oldest evicted");
        // Removing and re-adding keeps the order list bounded.
        let parts = PartSizes::default();
        for n in 0..3 * MAX_UPLOADS {
            parts.record(key(n), 1, Some(1));
            parts.take(&key(n), None);
        }
        assert!(parts.state.lock().unwrap().order.len() <= 2 * MAX_UPLOADS + 1);
    }
}
