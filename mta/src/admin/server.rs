//! The admin socket's listener: bound with the socket code both daemons share
//! (`way2mail_daemon::socket`: the mode set before anyone can connect, a stale file
//! replaced, a live one never), and served by their thread server
//! (`way2mail_daemon::thread_server`): an accept thread, a thread per connection, a
//! shutdown that lets the request in hand finish before the socket file goes.
//! Admission by `SO_PEERCRED` uid is this file's: all connections but one are kept
//! for `allowed_uids`, and any other uid gets that one at most, to hear `forbidden`,
//! so that no local user can keep control out by holding connections. Root is
//! admitted too unless `admin.allow_root = false` (config/admin.rs adds it to the
//! list): it can read the spool and its keys anyway, and `way2mail-mta spool
//! list|log|summary` run as root reach the daemon through this socket.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{Context, Result};
use way2mail_daemon::socket;
use way2mail_daemon::thread_server::{Admission, Busy, End, Handler, ThreadServer};
use way2mail_daemon::Caller;
use way2mail_wire::protocol::ErrorCode;

use super::answer::error_line;
use super::connection;
use super::ops::Ops;
use crate::config::admin::AdminSettings;

/// How long connections may take to finish the request in hand at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the thread server runs for each admin connection.
struct Admin {
    ops: Ops,
    settings: AdminSettings,
}

impl Handler for Admin {
    fn serve(&self, stream: UnixStream, caller: &Caller) -> End {
        if !self.settings.allowed_uids.contains(&caller.uid) {
            tracing::warn!(
                uid = caller.uid,
                pid = caller.pid,
                "admin socket: connection refused: uid not in admin.allowed_uids"
            );
            connection::forbid(stream, caller);
            return End::Closed;
        }
        connection::serve(stream, &self.ops, caller, self.settings.idle_timeout)
    }

    fn busy_line(&self, why: Busy) -> Vec<u8> {
        error_line(0, ErrorCode::Busy, format!("{why}; try again later"))
    }
}

/// The running admin socket; [`AdminServer::stop`] ends it and removes the file.
pub struct AdminServer {
    bound: socket::BoundSocket,
    server: ThreadServer<Admin>,
}

impl AdminServer {
    pub fn start(settings: AdminSettings, ops: Ops) -> Result<AdminServer> {
        ops.remove_stale_dumps();
        let bound = socket::bind(&settings.socket, settings.socket_mode).context("admin.socket")?;
        let max = settings.max_connections;
        let admission = Admission {
            max_connections: max,
            max_per_uid: 1,
            reserved: max.saturating_sub(1),
            service_uids: settings.allowed_uids.clone(),
        };
        let admin = Admin { ops, settings };
        let server = match ThreadServer::start("admin", &bound.listener, admission, admin) {
            Ok(s) => s,
            Err(e) => {
                bound.remove_file();
                return Err(e).context("starting the admin accept thread");
            }
        };
        let s = &server.handler().settings;
        tracing::info!(
            socket = %bound.path().display(),
            mode = format_args!("{:04o}", s.socket_mode),
            allowed_uids = ?s.allowed_uids,
            "admin socket listening"
        );
        Ok(AdminServer { bound, server })
    }

    /// Stops accepting, lets each connection finish the request it is answering
    /// (up to 10 s), and removes the socket file.
    pub fn stop(self) {
        let unfinished = self.server.stop(SHUTDOWN_GRACE);
        self.bound.remove_file();
        if unfinished > 0 {
            tracing::warn!(
                unfinished,
                "admin socket stopped with requests still running"
            );
        }
    }
}
