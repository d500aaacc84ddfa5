//! Work on a large configuration spread over the machine's cores: a 100,000-route table is read
//! and validated resource by resource, and the resources do not depend on each other there.

/// The number of items from which spreading them over several cores is worth its threads.
pub(crate) const WORTH_IT: usize = 256;

/// `work(first, part)` over consecutive parts of `items`, one part per core (at most 8), and the
/// results in the order of the parts. `first` is the index of the part's first item.
pub(crate) fn in_parts<T: Sync, R: Send>(items: &[T], work: impl Fn(usize, &[T]) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).min(8);
    if threads < 2 || items.len() < WORTH_IT {
        return vec![work(0, items)];
    }
    let per = items.len().div_ceil(threads);
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            items.chunks(per).enumerate().map(|(n, part)| scope.spawn(move || work(n * per, part))).collect();
        // A part's thread only panics on a bug; its panic is the caller's.
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

/// Drops `value` on a thread of its own when `size` says it is large: freeing the raw resources
/// of a 100,000-route configuration took a twentieth of the time to ready, which the caller need
/// not wait for.
pub(crate) fn drop_elsewhere<T: Send + 'static>(value: T, size: impl FnOnce(&T) -> usize) {
    if size(&value) >= WORTH_IT {
        // If no thread can be made, the value is dropped here instead.
        let _ = std::thread::Builder::new().name("conf-drop".into()).spawn(move || drop(value));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parts_come_back_in_order_and_cover_every_item() {
        let items: Vec<usize> = (0..1000).collect();
        let parts = super::in_parts(&items, |first, part| (first, part.to_vec()));
        assert!(parts.iter().all(|(first, part)| part.first() == Some(first)));
        assert_eq!(parts.into_iter().flat_map(|(_, p)| p).collect::<Vec<_>>(), items);
        assert_eq!(super::in_parts(&items[..3], |_, part| part.len()), [3], "few items: one part");
    }
}
