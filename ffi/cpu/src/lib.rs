//! CPU and OS primitives the rvs packet path needs and stable Rust's std
//! lacks, each behind a safe function:
//!
//! * [`prefetch`]: a cache prefetch hint, so a pipeline that handles a burst
//!   in stages can ask for the connection-table lines of every packet before
//!   it reads the first (`std::hint::prefetch_read` and friends are
//!   nightly-only; `core::arch`'s `_mm_prefetch` is an `unsafe` intrinsic).
//! * [`HugeArray`]: a fixed-length array on 2 MiB pages, faulted in when it is
//!   created, for the connection table: from the hugetlbfs pool
//!   (`MAP_HUGETLB`) when it has the pages free, else anonymous memory advised
//!   for transparent huge pages (`madvise(MADV_HUGEPAGE)`). The forwarding core
//!   then takes no page fault and few TLB misses on a lookup.
//!
//! Both need `unsafe` (an intrinsic, `mmap`, raw pointers). It lives here, in
//! a crate of its own that depends on nothing from DPDK, so that
//! `rvs-dataplane` keeps `#![forbid(unsafe_code)]` and builds without libdpdk;
//! every `unsafe` block says why it is sound (`// SAFETY:`).

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Asks the CPU to bring the cache line holding `r` into every cache level
/// (x86_64: `prefetcht0`). A hint only: it never faults and changes nothing
/// observable; on other architectures it does nothing.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of the x86_64 baseline, so the intrinsic's target
        // feature is always present; a prefetch of any address (here a live
        // reference) is a hint that neither faults nor reads into the program.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((r as *const T).cast::<i8>()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// Prefetches every cache line `r` spans: its first and its last byte's
/// (a 48-byte table slot straddles two 64-byte lines half of the time).
#[inline(always)]
pub fn prefetch_all<T>(r: &T) {
    prefetch(r);
    let last = (r as *const T).cast::<u8>().wrapping_add(std::mem::size_of::<T>().saturating_sub(1));
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: as in `prefetch`; `last` points into `r` (its last byte), and a
        // prefetch neither faults nor reads into the program in any case.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(last.cast::<i8>()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = last;
}

/// Size of the huge pages [`HugeArray`] asks for (x86_64's 2 MiB pages).
pub const HUGE_PAGE_SIZE: usize = 2 << 20;

/// What memory backs a [`HugeArray`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// 2 MiB pages of the hugetlbfs pool (`MAP_HUGETLB`), reserved and faulted
    /// in when the array was created.
    HugeTlb,
    /// Anonymous memory aligned to 2 MiB and advised for transparent huge
    /// pages (`MADV_HUGEPAGE`), faulted in when the array was created. The
    /// kernel decides how much of it gets huge pages: [`Smaps::anon_huge_bytes`].
    Transparent,
    /// Anonymous 4 KiB pages (an array smaller than a huge page, or a kernel
    /// that refused the advice), faulted in when the array was created.
    Small,
    /// The heap (an empty array, zero-sized elements, or no `mmap` available).
    Heap,
}

impl Backing {
    /// A short name for reports: `hugetlb`, `thp`, `4k`, `heap`.
    pub fn name(self) -> &'static str {
        match self {
            Backing::HugeTlb => "hugetlb",
            Backing::Transparent => "thp",
            Backing::Small => "4k",
            Backing::Heap => "heap",
        }
    }
}

/// How an array's mapping looks in `/proc/self/smaps`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Smaps {
    /// Size of the mapping.
    pub size_bytes: u64,
    /// Resident part of it.
    pub rss_bytes: u64,
    /// Part of it on transparent huge pages (`AnonHugePages`).
    pub anon_huge_bytes: u64,
    /// Part of it on hugetlbfs pages (`Private_Hugetlb` + `Shared_Hugetlb`).
    pub hugetlb_bytes: u64,
    /// Page size the kernel maps it with (`KernelPageSize`).
    pub kernel_page_size: u64,
}

/// Where an array's elements live.
enum Storage {
    /// An `mmap`ed region: `base` and `len` bytes as mapped, to unmap.
    Mapped { base: NonNull<libc::c_void>, len: usize },
    /// A boxed slice, turned into the array's pointer (`Box::into_raw`) and
    /// boxed again on drop.
    Heap,
}

/// A fixed-length array of `Copy` values on huge pages, every element written
/// (and so every page faulted in) when it is created; see [`Backing`] for the
/// memory it gets. It derefs to a slice.
pub struct HugeArray<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    storage: Storage,
    backing: Backing,
}

// SAFETY: the array owns its elements exclusively (no other pointer to the
// mapping exists), like a `Box<[T]>`: sending it sends the `T`s.
unsafe impl<T: Copy + Send> Send for HugeArray<T> {}
// SAFETY: shared access only hands out `&[T]`, like a `Box<[T]>`.
unsafe impl<T: Copy + Sync> Sync for HugeArray<T> {}

impl<T: Copy> HugeArray<T> {
    /// `len` copies of `fill`. Arrays of at least a huge page are mapped from
    /// the hugetlbfs pool when it has the pages free, else from anonymous
    /// memory advised for transparent huge pages; smaller ones from anonymous
    /// 4 KiB pages. Every element is written here, so every page is faulted in
    /// by the caller's thread now, never later by whoever reads the array.
    pub fn new(len: usize, fill: T) -> Self {
        Self::with_first_choice(len, fill, Backing::HugeTlb)
    }

    /// Like [`HugeArray::new`], starting the search at `first` (`HugeTlb`,
    /// then `Transparent`, then `Small`; `Heap` skips mapping altogether).
    pub fn with_first_choice(len: usize, fill: T, first: Backing) -> Self {
        // Too many bytes to count goes to the heap, which refuses it as a Vec does.
        let mapped = match len.checked_mul(std::mem::size_of::<T>()) {
            Some(bytes) if bytes > 0 && first != Backing::Heap => map(bytes, first, std::mem::align_of::<T>()),
            _ => None,
        };
        let Some((base, map_len, backing)) = mapped else {
            let raw: *mut [T] = Box::into_raw(vec![fill; len].into_boxed_slice());
            let ptr = NonNull::new(raw.cast::<T>()).unwrap_or(NonNull::dangling());
            return HugeArray { ptr, len, storage: Storage::Heap, backing: Backing::Heap };
        };
        let ptr = base.cast::<T>();
        for i in 0..len {
            // SAFETY: the mapping is `map_len >= len * size_of::<T>()` bytes,
            // readable and writable, aligned to a page (more than `T` needs),
            // and owned by nobody else yet; `i < len` keeps the write inside.
            // `write` does not read or drop the previous (zero) bytes.
            unsafe { ptr.as_ptr().add(i).write(fill) };
        }
        HugeArray { ptr, len, storage: Storage::Mapped { base, len: map_len }, backing }
    }

    /// What memory backs the array.
    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// The array's mapping as `/proc/self/smaps` describes it (`None` on the
    /// heap, or where `/proc` cannot be read).
    pub fn smaps(&self) -> Option<Smaps> {
        match self.storage {
            Storage::Mapped { base, len } => smaps_of(base.as_ptr() as usize, len),
            Storage::Heap => None,
        }
    }
}

impl<T: Copy> Deref for HugeArray<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` points at `len` initialised elements (all written in
        // `with_first_choice`, or a boxed slice) that live as long as `self`;
        // the shared borrow of `self` keeps them from being mutated meanwhile.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> DerefMut for HugeArray<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; the exclusive borrow of `self` makes this the
        // only reference to the elements.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for HugeArray<T> {
    fn drop(&mut self) {
        match self.storage {
            Storage::Mapped { base, len } => {
                // SAFETY: `base`/`len` are exactly a mapping this array made
                // and still owns; `T: Copy` needs no drop, and no reference to
                // the elements outlives `self`.
                unsafe { libc::munmap(base.as_ptr(), len) };
            }
            Storage::Heap => {
                let raw = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
                // SAFETY: `ptr`/`len` came from `Box::into_raw` of a boxed
                // slice of `len` elements in `with_first_choice` and were
                // never freed; this is the one place that boxes them again.
                drop(unsafe { Box::from_raw(raw) });
            }
        }
    }
}

impl<T: Copy> fmt::Debug for HugeArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HugeArray").field("len", &self.len).field("backing", &self.backing).finish_non_exhaustive()
    }
}

/// Maps `bytes` (> 0) of zeroed, writable memory, trying `first` and then the
/// kinds after it. Returns the base, the mapped length and the kind.
fn map(bytes: usize, first: Backing, align: usize) -> Option<(NonNull<libc::c_void>, usize, Backing)> {
    if align > page_size() {
        return None;
    }
    let huge_len = bytes.checked_next_multiple_of(HUGE_PAGE_SIZE)?;
    // hugetlbfs pages are whole: only when rounding up wastes at most an eighth.
    if first == Backing::HugeTlb && bytes >= HUGE_PAGE_SIZE && huge_len - bytes <= bytes / 8 {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | libc::MAP_HUGE_2MB | libc::MAP_POPULATE;
        if let Some(base) = mmap(huge_len, flags) {
            return Some((base, huge_len, Backing::HugeTlb));
        }
        // The pool lacks the pages (ENOMEM) or the kernel has none (EINVAL): go on.
    }
    let len = bytes.checked_next_multiple_of(page_size())?;
    if matches!(first, Backing::HugeTlb | Backing::Transparent) && bytes >= HUGE_PAGE_SIZE {
        if let Some(mapped) = map_transparent(len) {
            return Some(mapped);
        }
    }
    let base = mmap(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE)?;
    Some((base, len, Backing::Small))
}

/// `len` bytes (a multiple of the page size, at least [`HUGE_PAGE_SIZE`]) of
/// anonymous memory starting on a 2 MiB boundary, its whole 2 MiB blocks
/// advised for transparent huge pages (the rest stays on 4 KiB pages, so
/// nothing is wasted on rounding). Not populated here: the caller writes every
/// element after the advice, which faults the huge pages in.
fn map_transparent(len: usize) -> Option<(NonNull<libc::c_void>, usize, Backing)> {
    let over = len.checked_add(HUGE_PAGE_SIZE)?;
    let raw = mmap(over, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS)?;
    let start = raw.as_ptr() as usize;
    let aligned = start.next_multiple_of(HUGE_PAGE_SIZE);
    let head = aligned - start;
    let tail = over - head - len;
    // SAFETY: both ranges lie inside the mapping just made (`head + len + tail
    // == over`), are page-aligned (mmap returns page-aligned memory, `aligned`
    // is a multiple of 2 MiB and `len` of the page size), and nothing refers
    // to them; unmapping a zero-length range is skipped.
    unsafe {
        if head > 0 {
            libc::munmap(raw.as_ptr(), head);
        }
        if tail > 0 {
            libc::munmap((aligned + len) as *mut libc::c_void, tail);
        }
    }
    let base = NonNull::new(aligned as *mut libc::c_void)?;
    let whole = len / HUGE_PAGE_SIZE * HUGE_PAGE_SIZE;
    // SAFETY: `base..base + whole` lies in a private anonymous mapping this
    // function owns; advice changes how it is backed, never its contents.
    let advised = unsafe { libc::madvise(base.as_ptr(), whole, libc::MADV_HUGEPAGE) } == 0;
    Some((base, len, if advised { Backing::Transparent } else { Backing::Small }))
}

/// `mmap(NULL, len, PROT_READ | PROT_WRITE, flags, -1, 0)`, `None` on failure.
fn mmap(len: usize, flags: libc::c_int) -> Option<NonNull<libc::c_void>> {
    // SAFETY: an anonymous mapping at an address of the kernel's choosing
    // touches no existing memory; the result is checked before use.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        None
    } else {
        NonNull::new(p)
    }
}

/// The system's base page size.
fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// The `/proc/self/smaps` entries that overlap the mapping `addr..addr + len`,
/// summed (advice given to part of a mapping splits it into several entries;
/// an entry the kernel merged with a neighbouring mapping counts whole).
fn smaps_of(addr: usize, len: usize) -> Option<Smaps> {
    let text = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut s = Smaps::default();
    let mut inside = false;
    let mut found = false;
    for l in text.lines() {
        let mut fields = l.split_whitespace();
        let (Some(name), Some(value)) = (fields.next(), fields.next()) else { continue };
        // Field lines are `Name: value kB`; a mapping's header `start-end perms ...` has no colon.
        let Some(name) = name.strip_suffix(':') else {
            // Every entry that overlaps the mapping (the kernel may merge it with a neighbour).
            let range =
                name.split_once('-').and_then(|(a, b)| Some((usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?)));
            inside = range.is_some_and(|(start, end)| end > addr && start < addr.saturating_add(len));
            found |= inside;
            continue;
        };
        if !inside {
            continue;
        }
        let Ok(kb) = value.parse::<u64>() else { continue };
        let bytes = kb * 1024;
        match name {
            "Size" => s.size_bytes += bytes,
            "Rss" => s.rss_bytes += bytes,
            "AnonHugePages" => s.anon_huge_bytes += bytes,
            "Private_Hugetlb" | "Shared_Hugetlb" => s.hugetlb_bytes += bytes,
            // The largest page size of the parts.
            "KernelPageSize" => s.kernel_page_size = s.kernel_page_size.max(bytes),
            _ => {}
        }
    }
    found.then_some(s)
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::sync::Mutex;

    use super::*;

    /// Tests that depend on the hugetlbfs pool run one at a time.
    static POOL: Mutex<()> = Mutex::new(());

    /// 2 MiB pages of the pool that a new mapping can still reserve.
    fn available_huge_pages() -> usize {
        let read = |f: &str| {
            std::fs::read_to_string(format!("/sys/kernel/mm/hugepages/hugepages-2048kB/{f}"))
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .unwrap_or(0)
        };
        read("free_hugepages").saturating_sub(read("resv_hugepages"))
    }

    #[test]
    fn prefetch_is_only_a_hint() {
        let v = vec![7u64; 1024];
        for x in &v {
            prefetch(x);
        }
        prefetch(&());
        assert_eq!(v.iter().sum::<u64>(), 7 * 1024);
    }

    #[test]
    fn small_arrays_are_filled_and_writable() {
        let mut a = HugeArray::new(1000, 5u32);
        assert_eq!(a.backing(), Backing::Small, "under a huge page: 4 KiB pages");
        assert!(a.iter().all(|&x| x == 5));
        a[999] = 6;
        assert_eq!(a.iter().map(|&x| u64::from(x)).sum::<u64>(), 5 * 999 + 6);
        let smaps = a.smaps().expect("a mapping of this process");
        assert!(smaps.rss_bytes >= 4096, "faulted in at creation: {smaps:?}");
        let empty = HugeArray::new(0, 1u8);
        assert_eq!((empty.len(), empty.backing()), (0, Backing::Heap));
        let heap = HugeArray::with_first_choice(3, (1u16, 2u8), Backing::Heap);
        assert_eq!(&heap[..], &[(1, 2); 3]);
    }

    #[test]
    fn big_arrays_come_from_the_pool_when_it_has_the_pages() {
        let _pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let len = 8 * HUGE_PAGE_SIZE / 8 + 1; // a little over 8 huge pages of u64: 9 pages, an eighth wasted
        let had = available_huge_pages();
        let a = HugeArray::new(len, u64::MAX);
        let smaps = a.smaps().expect("a mapping of this process");
        if had >= 9 {
            assert_eq!(a.backing(), Backing::HugeTlb, "{had} pages were free");
            assert_eq!(smaps.kernel_page_size, HUGE_PAGE_SIZE as u64);
            assert_eq!(smaps.hugetlb_bytes, 9 * HUGE_PAGE_SIZE as u64, "faulted in at creation");
        } else {
            assert_eq!(a.backing(), Backing::Transparent, "only {had} pages were free");
            assert!(smaps.rss_bytes >= (len * 8) as u64, "faulted in at creation: {smaps:?}");
        }
        assert!(a.iter().all(|&x| x == u64::MAX));
        assert_eq!(a.as_ptr() as usize % HUGE_PAGE_SIZE, 0);
    }

    #[test]
    fn an_array_that_would_waste_a_huge_page_takes_transparent_ones_for_its_whole_blocks() {
        // 3 MiB: a hugetlbfs mapping would round it up to 4 MiB (a third wasted).
        let len = 3 * HUGE_PAGE_SIZE / 2 / 4;
        let a = HugeArray::new(len, 7u32);
        assert_eq!(a.backing(), Backing::Transparent);
        let smaps = a.smaps().expect("a mapping of this process");
        // (At least: the 4 KiB tail may have merged with a neighbouring mapping.)
        assert!(smaps.size_bytes >= 3 << 20 && smaps.rss_bytes >= 3 << 20 && smaps.hugetlb_bytes == 0, "{smaps:?}");
        assert!(smaps.anon_huge_bytes <= 2 << 20, "only the whole 2 MiB block is advised: {smaps:?}");
        assert!(a.iter().all(|&x| x == 7));
    }

    #[test]
    fn an_array_larger_than_the_free_pool_falls_back_to_transparent_huge_pages() {
        let _pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        // Other processes on this machine that need hugepages (DPDK in the
        // end-to-end suite) take this lock around their runs; hold it while
        // the pool is reserved (a few milliseconds, no memory is touched).
        let lock = File::open("/run/rvs-e2e.lock").ok();
        if let Some(f) = &lock {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor this test owns; released on close.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        }
        // Reserve every free page (mapped without faulting: no memory is
        // zeroed or used), so the array below finds the pool short.
        let mut held = Vec::new();
        for _ in 0..20 {
            let n = available_huge_pages();
            if n == 0 {
                break;
            }
            if let Some(p) = mmap(n * HUGE_PAGE_SIZE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | libc::MAP_HUGE_2MB) {
                held.push((p, n * HUGE_PAGE_SIZE));
            }
        }
        assert_eq!(available_huge_pages(), 0, "the pool is reserved");
        let len = 2 * HUGE_PAGE_SIZE / 4;
        let mut a = HugeArray::new(len, 0xa5a5_a5a5u32);
        let backing = a.backing();
        let smaps = a.smaps();
        for (p, n) in held {
            // SAFETY: a mapping made above, never referenced.
            unsafe { libc::munmap(p.as_ptr(), n) };
        }
        drop(lock);
        assert_eq!(backing, Backing::Transparent);
        let smaps = smaps.expect("a mapping of this process");
        assert_eq!(smaps.hugetlb_bytes, 0);
        assert!(smaps.rss_bytes >= 2 * HUGE_PAGE_SIZE as u64, "faulted in at creation: {smaps:?}");
        assert!(a.iter().all(|&x| x == 0xa5a5_a5a5));
        a[len - 1] = 1;
        assert_eq!(a[len - 1], 1);
    }
}
