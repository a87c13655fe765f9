//! Where outbound mail goes: next-hop selection from configured routes (`route`)
//! and from MX records with A/AAAA fallback (`mx`). The SMTP client that talks to
//! the chosen host is sans-IO in `way2mail_smtp::client`; the daemon's delivery
//! workers drive both.

pub mod mx;
pub mod route;
