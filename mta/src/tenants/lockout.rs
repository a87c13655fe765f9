//! Brute-force brakes for AUTH: failures are counted per client IP and per
//! username in a window that starts at the first failure; the failure that reaches
//! `max_failures` locks that IP (or username) for `lockout_secs`. While locked,
//! AUTH is refused without looking at the password, so a locked account costs no
//! argon2 time either. A success clears the IP's and the username's counts.
//!
//! Usernames are attacker-chosen and may be email addresses: they are kept only as
//! SHA-256 digests, and logs show a short prefix of that digest (an operator can
//! compare it with `printf %s USER | sha256sum`). Both maps are bounded.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;

/// Entries kept per map. An attacker spraying usernames or addresses fills the
/// map with counting entries, which are dropped first; active lockouts are kept.
const MAX_ENTRIES: usize = 100_000;

pub type UserKey = [u8; 32];

/// The digest a username is counted and logged under.
pub fn user_key(username: &str) -> UserKey {
    let d = digest::digest(&digest::SHA256, username.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(d.as_ref());
    key
}

/// The first six bytes of the digest in hex: enough to tell users apart in logs.
pub fn user_tag(key: &UserKey) -> String {
    key[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub max_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
}

/// What a failure changed, for the caller's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Locked {
    pub ip: bool,
    pub user: bool,
}

struct Maps {
    ips: HashMap<IpAddr, Entry>,
    users: HashMap<UserKey, Entry>,
}

pub struct Lockout {
    settings: Settings,
    maps: Mutex<Maps>,
}

impl Lockout {
    pub fn new(settings: Settings) -> Lockout {
        Lockout {
            settings,
            maps: Mutex::new(Maps {
                ips: HashMap::new(),
                users: HashMap::new(),
            }),
        }
    }

    pub fn max_failures(&self) -> u32 {
        self.settings.max_failures
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        // Updates are plain field writes that cannot panic half-way.
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True while the IP or the username is locked out.
    pub fn is_locked(&self, ip: IpAddr, user: &UserKey, now: Instant) -> bool {
        let maps = self.maps();
        let locked = |e: Option<&Entry>| e.and_then(|e| e.locked_until).is_some_and(|t| now < t);
        locked(maps.ips.get(&ip)) || locked(maps.users.get(user))
    }

    /// Counts a failed AUTH; says which lockouts it started.
    pub fn failure(&self, ip: IpAddr, user: &UserKey, now: Instant) -> Locked {
        let s = self.settings;
        let mut maps = self.maps();
        Locked {
            ip: count(&mut maps.ips, ip, now, s),
            user: count(&mut maps.users, *user, now, s),
        }
    }

    pub fn success(&self, ip: IpAddr, user: &UserKey) {
        let mut maps = self.maps();
        maps.ips.remove(&ip);
        maps.users.remove(user);
    }

    /// Drops entries whose window and lockout are both over.
    pub fn prune(&self, now: Instant) {
        let s = self.settings;
        let mut maps = self.maps();
        maps.ips.retain(|_, e| live(e, now, s));
        maps.users.retain(|_, e| live(e, now, s));
    }

    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        let maps = self.maps();
        (maps.ips.len(), maps.users.len())
    }
}

fn live(e: &Entry, now: Instant, s: Settings) -> bool {
    e.locked_until.is_some_and(|t| now < t) || now.duration_since(e.window_start) < s.window
}

/// Adds one failure for `key`; true when this failure started a lockout.
fn count<K: Eq + Hash>(map: &mut HashMap<K, Entry>, key: K, now: Instant, s: Settings) -> bool {
    if !map.contains_key(&key) && map.len() >= MAX_ENTRIES {
        map.retain(|_, e| live(e, now, s));
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, e| e.locked_until.is_some_and(|t| now < t));
        }
        if map.len() >= MAX_ENTRIES {
            return false;
        }
    }
    let e = map.entry(key).or_insert(Entry {
        failures: 0,
        window_start: now,
        locked_until: None,
    });
    if e.locked_until.is_some_and(|t| now < t) {
        return false;
    }
    if e.locked_until.is_some() || now.duration_since(e.window_start) >= s.window {
        *e = Entry {
            failures: 0,
            window_start: now,
            locked_until: None,
        };
    }
    e.failures += 1;
    if e.failures >= s.max_failures {
        e.locked_until = Some(now + s.lockout);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lockout() -> Lockout {
        Lockout::new(Settings {
            max_failures: 3,
            window: Duration::from_secs(600),
            lockout: Duration::from_secs(900),
        })
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn ip_is_locked_at_max_failures_for_the_lockout() {
        let l = lockout();
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        // Different usernames each time: only the IP reaches the limit.
        assert_eq!(l.failure(ip(1), &user_key("a"), s(0)), Locked::default());
        assert_eq!(l.failure(ip(1), &user_key("b"), s(10)), Locked::default());
        assert!(!l.is_locked(ip(1), &user_key("z"), s(11)));
        let locked = l.failure(ip(1), &user_key("c"), s(20));
        assert_eq!(
            locked,
            Locked {
                ip: true,
                user: false
            }
        );
        assert!(l.is_locked(ip(1), &user_key("z"), s(21)));
        assert!(
            !l.is_locked(ip(2), &user_key("z"), s(21)),
            "other IPs are free"
        );
        assert!(l.is_locked(ip(1), &user_key("z"), s(20 + 899)));
        assert!(!l.is_locked(ip(1), &user_key("z"), s(20 + 900)));
        // After the lockout the count starts again from zero.
        assert_eq!(l.failure(ip(1), &user_key("d"), s(1000)), Locked::default());
    }

    #[test]
    fn username_is_locked_across_ips() {
        let l = lockout();
        let t0 = Instant::now();
        let victim = user_key("ceo@acme.example");
        l.failure(ip(1), &victim, t0);
        l.failure(ip(2), &victim, t0);
        let locked = l.failure(ip(3), &victim, t0);
        assert_eq!(
            locked,
            Locked {
                ip: false,
                user: true
            }
        );
        assert!(l.is_locked(ip(9), &victim, t0));
        assert!(!l.is_locked(ip(9), &user_key("other"), t0));
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let l = lockout();
        let t0 = Instant::now();
        let u = user_key("u");
        l.failure(ip(1), &u, t0);
        l.failure(ip(1), &u, t0 + Duration::from_secs(599));
        // The window began at the first failure and is over: a fresh count.
        let locked = l.failure(ip(1), &u, t0 + Duration::from_secs(600));
        assert_eq!(locked, Locked::default());
        assert!(!l.is_locked(ip(1), &u, t0 + Duration::from_secs(601)));
    }

    #[test]
    fn success_clears_both_counts() {
        let l = lockout();
        let t0 = Instant::now();
        let u = user_key("u");
        l.failure(ip(1), &u, t0);
        l.failure(ip(1), &u, t0);
        l.success(ip(1), &u);
        assert_eq!(l.failure(ip(1), &u, t0), Locked::default());
        assert_eq!(l.failure(ip(1), &u, t0), Locked::default());
    }

    #[test]
    fn prune_keeps_lockouts_and_open_windows() {
        let l = lockout();
        let t0 = Instant::now();
        for n in 0..3 {
            l.failure(ip(1), &user_key(&n.to_string()), t0);
        }
        l.failure(ip(2), &user_key("x"), t0);
        assert_eq!(l.sizes(), (2, 4));
        l.prune(t0 + Duration::from_secs(700));
        assert_eq!(l.sizes(), (1, 0), "only the locked IP is left");
        l.prune(t0 + Duration::from_secs(900));
        assert_eq!(l.sizes(), (0, 0));
    }

    #[test]
    fn maps_are_bounded() {
        let l = lockout();
        let t0 = Instant::now();
        for n in 0..(MAX_ENTRIES as u32 + 10) {
            l.failure(IpAddr::from(n.to_be_bytes()), &user_key("same"), t0);
        }
        let (ips, users) = l.sizes();
        assert!(ips <= MAX_ENTRIES, "{ips}");
        assert_eq!(users, 1);
    }

    #[test]
    fn user_tags_are_short_digests() {
        let tag = user_tag(&user_key("abc"));
        // SHA-256("abc") = ba7816bf8f01…
        assert_eq!(tag, "ba7816bf8f01");
    }
}
