//! What a configuration reload may change. A re-read file is validated like the
//! first one; then [`Settings::keep_restart_only`] gives it back the running values
//! of everything that only a restart can change (sockets, threads, the spool, the
//! sockets to control and admin, ...), so that the settings put in force differ
//! from the running ones only where the change applies live, and says which keys
//! changed on each side.
//!
//! | live                                                    | restart only |
//! |---------------------------------------------------------|--------------|
//! | `[relay]` `[tls]` (files re-read) `[limits]` `[timeouts]` `[log] level, recipients` `[shaping]` `[[route]]` `[inbound]` `[api]` `[scan]` | `hostname` `[runtime]` `[[listener]]` `[spool]` `[log] format` `[delivery]` `[dns]` `[[egress]]` `[control]` `[auth]` `[dkim]` `[admin]` `[retention]` `[metrics]` `[bounces]` `[feedback]` `[reputation]` |
//!
//! docs/configuration.md says the same per key; keep the two in step.

use std::fmt::Debug;
use std::sync::Arc;

use super::Settings;

/// The keys whose values differ between the running settings and a re-read file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Applied by the reload.
    pub live: Vec<&'static str>,
    /// Kept at their running values until a restart.
    pub restart: Vec<&'static str>,
}

impl Settings {
    /// Takes the running values of the restart-only keys from `running`, and says
    /// which keys of the re-read file differ from the running ones.
    pub fn keep_restart_only(&mut self, running: &Settings) -> Changes {
        let mut changes = Changes::default();
        let (new, old) = (&self.raw, &running.raw);
        for (key, changed) in [
            ("relay", differs(&new.relay, &old.relay)),
            ("tls", differs(&new.tls, &old.tls)),
            ("limits", differs(&new.limits, &old.limits)),
            ("timeouts", differs(&new.timeouts, &old.timeouts)),
            ("log.level", differs(&new.log.level, &old.log.level)),
            (
                "log.recipients",
                differs(&new.log.recipients, &old.log.recipients),
            ),
            ("shaping", differs(&new.shaping, &old.shaping)),
            ("route", differs(&new.routes, &old.routes)),
            ("inbound", differs(&new.inbound, &old.inbound)),
            ("api", differs(&new.api, &old.api)),
            ("scan", differs(&new.scan, &old.scan)),
        ] {
            if changed {
                changes.live.push(key);
            }
        }
        let restart = &mut changes.restart;
        let (new, old) = (&mut self.raw, &running.raw);
        keep("hostname", &mut new.hostname, &old.hostname, restart);
        keep("runtime", &mut new.runtime, &old.runtime, restart);
        keep("listener", &mut new.listeners, &old.listeners, restart);
        keep("spool", &mut new.spool, &old.spool, restart);
        keep("log.format", &mut new.log.format, &old.log.format, restart);
        keep("delivery", &mut new.delivery, &old.delivery, restart);
        keep("dns", &mut new.dns, &old.dns, restart);
        keep("egress", &mut new.egress, &old.egress, restart);
        keep("control", &mut new.control, &old.control, restart);
        keep("auth", &mut new.auth, &old.auth, restart);
        keep("dkim", &mut new.dkim, &old.dkim, restart);
        keep("admin", &mut new.admin, &old.admin, restart);
        keep("retention", &mut new.retention, &old.retention, restart);
        keep("metrics", &mut new.metrics, &old.metrics, restart);
        keep("bounces", &mut new.bounces, &old.bounces, restart);
        keep("feedback", &mut new.feedback, &old.feedback, restart);
        keep("reputation", &mut new.reputation, &old.reputation, restart);
        // What validation derived from those keys goes back with them.
        self.listeners.clone_from(&running.listeners);
        self.threads = running.threads;
        self.egress.clone_from(&running.egress);
        self.dns.clone_from(&running.dns);
        self.admin.clone_from(&running.admin);
        self.metrics = running.metrics;
        self.bounces = Arc::clone(&running.bounces);
        self.intake.clone_from(&running.intake);
        changes
    }
}

/// Whether two parsed values differ. The configuration types are compared through
/// their `Debug` text rather than `PartialEq`, which half of them (and the daemon
/// crate's) do not derive; none holds a hash map, so equal values print alike.
fn differs<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") != format!("{b:?}")
}

/// Puts the running value back when the file changed it, and names the key.
fn keep<T: Debug + Clone>(key: &'static str, new: &mut T, old: &T, changed: &mut Vec<&str>) {
    if differs(new, old) {
        changed.push(key);
        new.clone_from(old);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn settings(text: &str) -> super::Settings {
        Config::parse(text).unwrap().validate().unwrap()
    }

    #[test]
    fn an_unchanged_file_changes_nothing() {
        let running = settings("[limits]\nmax_recipients = 200\n");
        let mut again = settings("[limits]\nmax_recipients = 200\n");
        assert_eq!(again.keep_restart_only(&running), super::Changes::default());
    }

    #[test]
    fn live_keys_apply_and_restart_only_keys_keep_their_running_values() {
        let running = settings(
            "[[listener]]\naddress = \"127.0.0.1:2525\"\nrole = \"mx\"\n\
             [spool]\npath = \"/srv/a\"\n[log]\nlevel = \"info\"\n",
        );
        let mut new = settings(
            "[[listener]]\naddress = \"127.0.0.1:2526\"\nrole = \"mx\"\n\
             [spool]\npath = \"/srv/b\"\nmemory_budget = 1048576\n[log]\nlevel = \"debug\"\nformat = \"json\"\n\
             [limits]\nmax_recipients = 150\n\
             [[route]]\ndomain = \"example.com\"\nhost = \"[127.0.0.1]:25\"\n",
        );
        let changes = new.keep_restart_only(&running);
        assert_eq!(changes.live, ["limits", "log.level", "route"]);
        assert_eq!(changes.restart, ["listener", "spool", "log.format"]);
        assert_eq!(new.listeners[0].address.port(), 2525);
        assert_eq!(new.raw.listeners[0].address, "127.0.0.1:2525");
        assert_eq!(new.raw.spool.path, running.raw.spool.path);
        assert_eq!(new.raw.spool.memory_budget, running.raw.spool.memory_budget);
        assert_eq!(new.raw.log.format, running.raw.log.format);
        assert_eq!(new.raw.log.level, "debug");
        assert_eq!(new.limits.max_recipients, 150);
        assert!(new.routes.find("example.com").is_some());
    }
}
