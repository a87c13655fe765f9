//! Who is on the other end of an accepted connection: the kernel's `SO_PEERCRED`
//! answer, taken once at accept. It names the process that called `connect`, so a
//! client cannot claim another identity; operators prove theirs with a session
//! token on top of it.

use std::io;
use std::os::unix::net::UnixStream;

/// Who is on the other end of the socket, from `SO_PEERCRED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
}

pub fn caller(stream: &UnixStream) -> io::Result<Caller> {
    let cred = rustix::net::sockopt::socket_peercred(stream)?;
    Ok(Caller {
        uid: cred.uid.as_raw(),
        gid: cred.gid.as_raw(),
        pid: cred.pid.as_raw_nonzero().get(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_credentials_are_ours() {
        let (a, _b) = UnixStream::pair().expect("socketpair");
        let c = caller(&a).expect("peercred");
        assert_eq!(c.uid, rustix::process::getuid().as_raw());
        assert_eq!(c.gid, rustix::process::getgid().as_raw());
        assert_eq!(c.pid, i32::try_from(std::process::id()).expect("pid fits"));
    }
}
