//! Password checks off the SMTP cores. An argon2id verification costs tens of
//! milliseconds of CPU; on a core thread it would stall every session of that core,
//! so a small pool of threads does them, fed through a bounded channel and answering
//! through a oneshot the session awaits (works on the epoll and io_uring runtimes
//! alike). A full queue means overload: the caller answers `454` instead of waiting.
//!
//! Successful checks are remembered per username as SHA-256(process salt ‖ password)
//! next to the PHC string they matched, so a client that reconnects with the same
//! password skips argon2, and a changed hash (new snapshot) makes the entry useless.
//! An unknown username is checked against a decoy hash made at start with control's
//! parameters, so the answer takes as long as for a real user.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use aws_lc_rs::digest;
use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use super::directory::Directory;

/// Checks waiting for a thread; beyond this AUTH is answered `454` at once.
const QUEUE: usize = 256;
/// Remembered successes; the cache is emptied when it would grow past this.
const CACHE_ENTRIES: usize = 10_000;

/// The pool is saturated or gone: the check did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

struct Job {
    phc: Arc<str>,
    password: Zeroizing<String>,
    answer: oneshot::Sender<bool>,
}

struct Cached {
    phc: Arc<str>,
    digest: [u8; 32],
}

pub struct Verifier {
    jobs: Sender<Job>,
    salt: [u8; 32],
    decoy: Arc<str>,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Verifier {
    pub fn start(threads: usize) -> Result<Verifier> {
        let (jobs, rx) = crossbeam_channel::bounded::<Job>(QUEUE);
        for n in 0..threads {
            let rx = rx.clone();
            // The threads end when the Verifier (the only sender) is dropped.
            std::thread::Builder::new()
                .name(format!("auth-verify-{n}"))
                .spawn(move || {
                    for job in rx {
                        let ok = way2mail_seal::password::verify(&job.password, &job.phc);
                        // The session may have gone away meanwhile; nothing to tell.
                        let _ = job.answer.send(ok);
                    }
                })
                .context("spawning a password verification thread")?;
        }
        let mut salt = [0u8; 32];
        aws_lc_rs::rand::fill(&mut salt)
            .map_err(|_| anyhow::anyhow!("the random generator failed"))?;
        let decoy_password = way2mail_seal::password::generate_password()
            .context("generating the decoy password")?;
        let decoy =
            way2mail_seal::password::hash(&decoy_password).context("hashing the decoy password")?;
        Ok(Verifier {
            jobs,
            salt,
            decoy: decoy.into(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        // Inserts and removals cannot panic half-way.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn digest(&self, password: &str) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&self.salt);
        ctx.update(password.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// Whether `password` is `username`'s in `directory`. Unknown users cost a
    /// decoy verification and are never a match.
    pub async fn check(
        &self,
        directory: &Directory,
        username: &str,
        password: Zeroizing<String>,
    ) -> Result<bool, Busy> {
        let Some(user) = directory.user(username) else {
            self.run(Arc::clone(&self.decoy), password).await?;
            return Ok(false);
        };
        let digest = self.digest(&password);
        let hit = self.cache().get(username).is_some_and(|c| {
            *c.phc == *user.password_hash
                && aws_lc_rs::constant_time::verify_slices_are_equal(&c.digest, &digest).is_ok()
        });
        if hit {
            return Ok(true);
        }
        let phc: Arc<str> = user.password_hash.as_str().into();
        let ok = self.run(Arc::clone(&phc), password).await?;
        if ok {
            let mut cache = self.cache();
            if cache.len() >= CACHE_ENTRIES && !cache.contains_key(username) {
                cache.clear();
            }
            cache.insert(username.to_owned(), Cached { phc, digest });
        }
        Ok(ok)
    }

    async fn run(&self, phc: Arc<str>, password: Zeroizing<String>) -> Result<bool, Busy> {
        let (answer, wait) = oneshot::channel();
        let job = Job {
            phc,
            password,
            answer,
        };
        match self.jobs.try_send(job) {
            Ok(()) => wait.await.map_err(|_| Busy),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }

    /// Forgets successes whose user is gone or has another hash in `directory`.
    pub fn forget_stale(&self, directory: &Directory) {
        self.cache().retain(|username, c| {
            directory
                .user(username)
                .is_some_and(|u| *u.password_hash == *c.phc)
        });
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cache().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use way2mail_wire::protocol::TenantStatus;
    use way2mail_wire::snapshot::{SmtpUser, Snapshot, SnapshotTenant, TenantLimits};

    fn directory(version: u64, password: &str) -> Directory {
        Directory::new(&Snapshot {
            version,
            erased: Vec::new(),
            generated_at_ms: 0,
            tenants: vec![SnapshotTenant {
                tenant: "acme".into(),
                status: TenantStatus::Active,
                domains: vec!["acme.example".into()],
                limits: TenantLimits::default(),
                smtp_users: vec![SmtpUser {
                    username: "bob@acme.example".into(),
                    credential_id: "c1".into(),
                    password_hash: way2mail_seal::password::hash(password).expect("hash"),
                }],
                sending: Vec::new(),
                retention: None,
                legal_hold: false,
                suppressed: Vec::new(),
                api_keys: Vec::new(),
                list_unsubscribe: false,
                webhooks: Vec::new(),
                sending_paused: false,
            }],
        })
    }

    fn pw(s: &str) -> Zeroizing<String> {
        Zeroizing::new(s.to_owned())
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn right_wrong_and_unknown() {
        let v = Verifier::start(2).expect("start");
        let d = directory(1, "s3cret");
        block_on(async {
            assert_eq!(
                v.check(&d, "bob@acme.example", pw("s3cret")).await,
                Ok(true)
            );
            assert_eq!(
                v.check(&d, "bob@acme.example", pw("s3cre")).await,
                Ok(false)
            );
            assert_eq!(
                v.check(&d, "alice@acme.example", pw("s3cret")).await,
                Ok(false)
            );
        });
        assert_eq!(v.cached(), 1, "only the success is cached");
    }

    #[test]
    fn cache_skips_argon2_until_the_hash_changes() {
        let v = Verifier::start(1).expect("start");
        let d = directory(1, "s3cret");
        block_on(async {
            assert_eq!(
                v.check(&d, "bob@acme.example", pw("s3cret")).await,
                Ok(true)
            );
            let t = Instant::now();
            for _ in 0..50 {
                assert_eq!(
                    v.check(&d, "bob@acme.example", pw("s3cret")).await,
                    Ok(true)
                );
            }
            // Fifty argon2 runs would take seconds; cached answers take microseconds.
            assert!(
                t.elapsed() < Duration::from_millis(200),
                "{:?}",
                t.elapsed()
            );
            assert_eq!(
                v.check(&d, "bob@acme.example", pw("other")).await,
                Ok(false)
            );
            // New password in a new snapshot: the old one no longer works, cached or not.
            let d2 = directory(2, "n3w");
            v.forget_stale(&d2);
            assert_eq!(v.cached(), 0);
            assert_eq!(
                v.check(&d2, "bob@acme.example", pw("s3cret")).await,
                Ok(false)
            );
            assert_eq!(v.check(&d2, "bob@acme.example", pw("n3w")).await, Ok(true));
        });
    }

    #[test]
    fn unknown_users_cost_as_much_as_known_ones() {
        let v = Verifier::start(1).expect("start");
        let d = directory(1, "s3cret");
        block_on(async {
            // The fastest of a few interleaved tries of each: a busy machine only
            // ever adds time, so the minimum is the cost of the work itself.
            let (mut known, mut unknown) = (Duration::MAX, Duration::MAX);
            for _ in 0..3 {
                let t = Instant::now();
                assert_eq!(
                    v.check(&d, "bob@acme.example", pw("wrong")).await,
                    Ok(false)
                );
                known = known.min(t.elapsed());
                let t = Instant::now();
                assert_eq!(v.check(&d, "nobody", pw("wrong")).await, Ok(false));
                unknown = unknown.min(t.elapsed());
            }
            assert!(unknown * 3 > known, "known {known:?} unknown {unknown:?}");
        });
    }
}
