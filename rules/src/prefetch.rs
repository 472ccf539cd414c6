//! Software prefetch hints, for the batch entry points: they start loading the state of
//! readings a few places ahead while the current one is evaluated. A hint never faults and
//! never changes a result; on targets without one it does nothing.

/// Starts loading the cache line holding `p`.
#[inline(always)]
pub(crate) fn line<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint to the cache; it does not access memory architecturally
    // and never faults, whatever the address.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Starts loading every cache line of `bytes` bytes from `p`.
#[inline(always)]
pub(crate) fn span<T>(p: *const T, bytes: usize) {
    let start = p as usize & !63;
    let end = p as usize + bytes;
    let mut a = start;
    while a < end {
        line(a as *const u8);
        a += 64;
    }
}
