//! Site → readings partition.
//!
//! Every reading of a site goes to one partition, so site-level rules (k-of-n roll-ups, AND
//! across kinds) see all their members in one rules worker. The mapping is a 32-bit FNV-1a
//! hash of the site id modulo the partition count: stable across processes, languages and
//! restarts. Changing the partition count moves sites between partitions, so it needs a
//! coordinated restart of the rules workers (docs/operations.md).

/// The partition of `site` among `partitions` (> 0).
pub fn site_partition(site: &str, partitions: i32) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in site.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % partitions.max(1) as u32) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_stable_and_spreads_sites() {
        // FNV-1a 32 of "a" is 0xe40c292c: pinning it keeps the mapping stable across releases.
        assert_eq!(site_partition("a", 1_000_000_007), (0xe40c_292c_u32 % 1_000_000_007) as i32);
        let mut used = [0usize; 6];
        for i in 0..600 {
            used[site_partition(&format!("site-{i}"), 6) as usize] += 1;
        }
        assert!(used.iter().all(|&n| n > 60), "uneven spread {used:?}");
        assert_eq!(site_partition("x", 0), 0);
    }
}
