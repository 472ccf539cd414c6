//! Login throttling: growing delays per client address and per (name, address), never a lock
//! on a name alone (an outsider who knows an officer's name — it is in every alert event's
//! `by` — must not be able to keep that officer out from another address).
//!
//! Every attempt is counted when it is let through, under the same lock as the check, so
//! parallel attempts cannot all pass before the first failure is recorded; a successful login
//! takes its attempt back. The bookkeeping holds at most [`Limits::capacity`] entries: quiet
//! entries are forgotten after [`Limits::forget_after`], and when full the least recently used
//! entry makes room. Time is passed in, so the tests drive a fake clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The policy.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Attempts from one address let through before delays start (covers many names).
    pub free_per_address: u32,
    /// Failed attempts for one name from one address before delays start.
    pub free_per_name: u32,
    /// The first delay; each further attempt doubles it.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// An entry with no attempt for this long (and no delay running) is forgotten.
    pub forget_after: Duration,
    /// Most entries kept.
    pub capacity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            free_per_address: 10,
            free_per_name: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            forget_after: Duration::from_secs(900),
            capacity: 10_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    NameAt(String, IpAddr),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    attempts: u32,
    /// No attempt before this.
    not_before: Instant,
    last: Instant,
}

/// Failed-login bookkeeping (keep it behind one mutex: [`Throttle::attempt`] is the atomic
/// check-and-count).
#[derive(Debug)]
pub struct Throttle {
    limits: Limits,
    entries: HashMap<Key, Entry>,
}

/// Characters of a name kept in a key (names are the client's to choose: bounded bytes too).
const NAME_CHARS: usize = 64;

fn name_key(name: &str, ip: IpAddr) -> Key {
    Key::NameAt(name.chars().take(NAME_CHARS).collect(), ip)
}

/// After `attempts` with `free` of them free: 0, then base, 2 × base, 4 × base … up to max.
fn delay(limits: &Limits, attempts: u32, free: u32) -> Duration {
    if attempts < free {
        return Duration::ZERO;
    }
    let doublings = (attempts - free).min(30);
    limits.base_delay.saturating_mul(1 << doublings).min(limits.max_delay)
}

/// The address as throttled: IPv6 by its /64 (one host usually holds a whole /64).
fn client(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl Throttle {
    /// Empty, with `limits`.
    pub fn new(limits: Limits) -> Self {
        Throttle { limits, entries: HashMap::new() }
    }

    /// Entries held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Lets a login attempt for `name` from `ip` through and counts it, or says how long to wait.
    pub fn attempt(&mut self, name: &str, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let ip = client(ip);
        let keys = [Key::Address(ip), name_key(name, ip)];
        let wait = keys
            .iter()
            .filter_map(|k| self.entries.get(k))
            .map(|e| e.not_before.saturating_duration_since(now))
            .max()
            .unwrap_or_default();
        if !wait.is_zero() {
            return Err(wait);
        }
        let frees = [self.limits.free_per_address, self.limits.free_per_name];
        for (key, free) in keys.into_iter().zip(frees) {
            if !self.entries.contains_key(&key) {
                self.make_room(now);
            }
            let limits = self.limits;
            let e = self.entries.entry(key).or_insert(Entry { attempts: 0, not_before: now, last: now });
            e.attempts = e.attempts.saturating_add(1);
            e.last = now;
            e.not_before = now + delay(&limits, e.attempts, free);
        }
        Ok(())
    }

    /// The attempt let through for `name` from `ip` succeeded: it no longer counts, and the
    /// name's failures from that address are forgotten.
    pub fn succeeded(&mut self, name: &str, ip: IpAddr) {
        let ip = client(ip);
        self.entries.remove(&name_key(name, ip));
        let free = self.limits.free_per_address;
        if let Some(mut e) = self.entries.get(&Key::Address(ip)).copied() {
            e.attempts = e.attempts.saturating_sub(1);
            e.not_before = e.last + self.delay(e.attempts, free);
            self.entries.insert(Key::Address(ip), e);
        }
    }

    /// The attempt let through for `name` from `ip` was not decided (the server was too busy
    /// to check the password): it no longer counts.
    pub fn refund(&mut self, name: &str, ip: IpAddr) {
        let ip = client(ip);
        let keys = [Key::Address(ip), name_key(name, ip)];
        let frees = [self.limits.free_per_address, self.limits.free_per_name];
        for (key, free) in keys.into_iter().zip(frees) {
            if let Some(mut e) = self.entries.get(&key).copied() {
                e.attempts = e.attempts.saturating_sub(1);
                e.not_before = e.last + self.delay(e.attempts, free);
                self.entries.insert(key, e);
            }
        }
    }

    fn delay(&self, attempts: u32, free: u32) -> Duration {
        delay(&self.limits, attempts, free)
    }

    /// Below capacity before an insert: forget quiet entries, then if still full the least
    /// recently used one.
    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < self.limits.capacity {
            return;
        }
        let forget = self.limits.forget_after;
        self.entries.retain(|_, e| now.saturating_duration_since(e.last) < forget || e.not_before > now);
        while self.entries.len() >= self.limits.capacity.max(1) {
            let Some(oldest) = self.entries.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| k.clone()) else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limits() -> Limits {
        Limits {
            free_per_address: 10,
            free_per_name: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            forget_after: Duration::from_secs(900),
            capacity: 100,
        }
    }

    #[test]
    fn failures_for_a_name_from_one_address_grow_delays_there_and_nowhere_else() {
        let mut t = Throttle::new(limits());
        let t0 = Instant::now();
        let (attacker, officer) = (ip("127.0.0.2"), ip("127.0.0.1"));
        // Three free attempts, then the 4th has to wait 1 s, the 5th 2 s, the 6th 4 s …
        for _ in 0..3 {
            assert_eq!(t.attempt("duty", attacker, t0), Ok(()));
        }
        assert_eq!(t.attempt("duty", attacker, t0), Err(Duration::from_secs(1)));
        let mut now = t0 + Duration::from_secs(1);
        let mut waits = Vec::new();
        for _ in 0..5 {
            assert_eq!(t.attempt("duty", attacker, now), Ok(()));
            let w = t.attempt("duty", attacker, now).unwrap_err();
            waits.push(w.as_secs());
            now += w;
        }
        assert_eq!(waits, [2, 4, 8, 16, 32]);
        assert_eq!(t.attempt("duty", attacker, now), Ok(()));
        assert_eq!(t.attempt("duty", attacker, now), Err(Duration::from_secs(60)), "capped at max_delay");
        // The officer, from their own address, is not held up at all.
        assert_eq!(t.attempt("duty", officer, now), Ok(()));
        t.succeeded("duty", officer);
        // Nor is another name from the attacker's address (until its address budget is spent).
        assert_eq!(t.attempt("wang", attacker, now), Ok(()));
    }

    #[test]
    fn one_address_trying_many_names_is_slowed_and_a_success_takes_its_attempt_back() {
        let mut t = Throttle::new(limits());
        let now = Instant::now();
        let a = ip("10.0.0.5");
        for i in 0..10 {
            assert_eq!(t.attempt(&format!("name-{i}"), a, now), Ok(()), "attempt {i}");
        }
        assert_eq!(t.attempt("name-10", a, now), Err(Duration::from_secs(1)));
        // The check and the count are one step: a refused attempt is not counted, an admitted
        // one is counted before its password is even checked.
        let mut t = Throttle::new(limits());
        for _ in 0..9 {
            t.attempt("li", a, now).ok();
            t.succeeded("li", a);
        }
        assert_eq!(t.attempt("li", a, now), Ok(()));
        assert_eq!(t.attempt("li", a, now), Ok(()));
        assert_eq!(t.attempt("li", a, now), Ok(()));
        assert!(t.attempt("li", a, now).is_err(), "three in flight for li: the 4th waits");
        // IPv6: one /64 is one client.
        let mut t = Throttle::new(limits());
        for i in 0..10 {
            assert_eq!(t.attempt(&format!("n{i}"), ip(&format!("2001:db8::{i:x}")), now), Ok(()));
        }
        assert!(t.attempt("n10", ip("2001:db8::ffff"), now).is_err());
        assert_eq!(t.attempt("n10", ip("2001:db8:0:1::1"), now), Ok(()));
    }

    #[test]
    fn the_bookkeeping_stays_bounded_and_forgets_quiet_entries() {
        let mut t = Throttle::new(limits());
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let a = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            let _ = t.attempt(&format!("u{i}"), a, t0 + Duration::from_millis(i.into()));
            assert!(t.len() <= 100, "{} entries after {i}", t.len());
        }
        // Quiet entries are forgotten once room is needed.
        let later = t0 + Duration::from_secs(3600);
        let _ = t.attempt("x", ip("192.0.2.1"), later);
        assert!(t.len() <= 3, "{} entries", t.len());
        // A name of a megabyte is kept as its first 64 characters.
        let long = "x".repeat(1 << 20);
        let _ = t.attempt(&long, ip("192.0.2.2"), later);
        assert!(t.entries.keys().all(|k| !matches!(k, Key::NameAt(n, _) if n.len() > NAME_CHARS)));
    }
}
