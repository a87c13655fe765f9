//! The MTA's deliverability report (`deliverability` on its admin socket, as
//! control asks for it) end to end: a tenant's mail over real SMTP to next hops
//! that take some recipients and refuse others with `550 5.1.1`, and to one that
//! cannot be reached, counted per (message, recipient) from the tenant's delivery
//! log: volume, delivered, deferred, bounced by category, the domains table; another
//! tenant's mail is not in it; the window leaves out what came before it; unknown
//! tenants get an empty report and bad tenant names an `invalid` answer.

#[allow(dead_code)]
#[path = "mta_admin/rig.rs"]
mod rig;

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Result};
use way2mail_daemon::time::now_ms;
use way2mail_tests::{wait_for, Backend, Behaviour, Daemon, FakeControl, Sink, SinkOptions};
use way2mail_wire::client::ClientError;
use way2mail_wire::mta_admin::{AdminOp, AdminResult, DeliverabilityReport, DomainOutcomes};
use way2mail_wire::protocol::{ErrorCode, TenantStatus};

use rig::{snapshot, submit_as, tenant, Rig, WAIT};

fn report(daemon: &Daemon, tenant: &str, since_ms: u64) -> Result<DeliverabilityReport> {
    match daemon.admin()?.call(AdminOp::Deliverability {
        tenant: tenant.into(),
        since_ms,
    })? {
        AdminResult::Deliverability(r) => Ok(r),
        other => bail!("deliverability answered {other:?}"),
    }
}

fn domain(name: &str, counts: [u64; 5]) -> DomainOutcomes {
    let [volume, delivered, deferred, bounced, complaints] = counts;
    DomainOutcomes {
        domain: name.into(),
        volume,
        delivered,
        deferred,
        bounced,
        complaints,
    }
}

#[test]
fn a_tenants_outcomes_are_counted_per_recipient_and_domain() -> Result<()> {
    let rig = Rig::new()?;
    // Takes recipients whose local part starts with `ok`, refuses the others.
    let picky = Sink::start(SinkOptions {
        behaviour: Behaviour::RejectRcpt(550, "5.1.1"),
        ..SinkOptions::default()
    })?;
    let tenants = vec![
        tenant("acme", TenantStatus::Active)?,
        tenant("globex", TenantStatus::Active)?,
    ];
    let _control = FakeControl::start(&rig.control_socket(), snapshot(1, tenants, &[]))?;
    let config = rig
        .config(Backend::Epoll)
        .raw(&picky.route("alpha.test"))
        .raw(&picky.route("beta.test"))
        // The bounce notices to the tenants' senders are delivered to the rig's sink.
        .raw(&rig.sink.route("acme.example"))
        .raw(&rig.sink.route("globex.example"));
    let daemon = Daemon::start(&config)?;
    let since_ms = now_ms();

    // acme: alpha.test takes two of three recipients of one message, beta.test one
    // of two messages; stuck.example cannot be reached.
    let mut c = rig::authenticated(&daemon, "acme")?;
    let from = "app@acme.example";
    let alpha = ["ok-ann@alpha.test", "ok-bob@alpha.test", "gone@alpha.test"];
    let r = c.send_message(
        from,
        &alpha,
        &rig::message(from, "ok-ann@alpha.test", "acme-alpha"),
    )?;
    way2mail_tests::queued_id(&r)?;
    submit_as(&daemon, "acme", "ok-cat@beta.test", "acme-beta-1")?;
    submit_as(&daemon, "acme", "nobody@beta.test", "acme-beta-2")?;
    submit_as(&daemon, "acme", "someone@stuck.example", "acme-stuck")?;
    // globex: one delivered to alpha.test, in globex's report only.
    submit_as(&daemon, "globex", "ok-dan@alpha.test", "globex-alpha")?;

    // The picky sink takes 3 messages (the one to nobody@ has no recipient it
    // takes), the rig's sink the 2 notices of acme's bounces; the deferral is
    // recorded on the first attempt.
    picky.wait_for(3, WAIT)?;
    rig.sink.wait_for(2, WAIT)?;
    let want_totals =
        |r: &DeliverabilityReport| (r.volume, r.delivered, r.deferred, r.bounced) == (8, 5, 1, 2);
    let acme = wait_for("acme's outcomes in its report", WAIT, || {
        report(&daemon, "acme", since_ms)
            .ok()
            .filter(|r| want_totals(r))
    })
    .or_else(|e| {
        let last = report(&daemon, "acme", since_ms)?;
        bail!("{e}: last report {last:?}")
    })?;
    ensure!(
        acme.tenant == "acme" && acme.since_ms == since_ms && acme.until_ms >= since_ms,
        "{acme:?}"
    );
    ensure!(
        (acme.expired, acme.async_bounced, acme.complaints) == (0, 0, 0)
            && (acme.unsubscribes, acme.suppressed, acme.suppressions_added) == (0, 0, 0),
        "{acme:?}"
    );
    ensure!(
        acme.bounced_by_category == BTreeMap::from([("invalid_recipient".to_owned(), 2)]),
        "{:?}",
        acme.bounced_by_category
    );
    ensure!(
        acme.domains
            == vec![
                domain("alpha.test", [3, 2, 0, 1, 0]),
                domain("acme.example", [2, 2, 0, 0, 0]),
                domain("beta.test", [2, 1, 0, 1, 0]),
                domain("stuck.example", [1, 0, 1, 0, 0]),
            ],
        "{:#?}",
        acme.domains
    );

    // globex's report holds its own delivery only.
    let globex = report(&daemon, "globex", since_ms)?;
    ensure!(
        (globex.volume, globex.delivered, globex.bounced) == (1, 1, 0)
            && globex.domains == vec![domain("alpha.test", [1, 1, 0, 0, 0])],
        "{globex:?}"
    );

    // A window that starts after everything is empty; so is an unknown tenant's.
    let later = report(&daemon, "acme", now_ms() + 1)?;
    ensure!(
        later.volume == 0 && later.domains.is_empty() && later.bounced_by_category.is_empty(),
        "{later:?}"
    );
    let nobody = report(&daemon, "nobody", 0)?;
    ensure!(
        nobody
            == DeliverabilityReport {
                tenant: "nobody".into(),
                since_ms: 0,
                until_ms: nobody.until_ms,
                ..DeliverabilityReport::default()
            },
        "{nobody:?}"
    );
    // Bad tenant names are refused like in every other op.
    for bad in ["", "Acme", "../acme", "a b"] {
        let e = daemon
            .admin()?
            .call(AdminOp::Deliverability {
                tenant: bad.into(),
                since_ms: 0,
            })
            .expect_err(bad);
        let ClientError::Remote(body) = e else {
            bail!("{bad:?}: {e}");
        };
        ensure!(body.code == ErrorCode::Invalid, "{bad:?}: {body:?}");
    }

    // One log line per request, with the tenant and never an address.
    let log = daemon.stderr();
    ensure!(
        log.lines().any(|l| l.contains("admin request")
            && l.contains("op=\"deliverability\"")
            && l.contains("tenant=\"acme\"")),
        "no admin request line for deliverability"
    );
    ensure!(
        !log.lines()
            .filter(|l| l.contains("deliverability"))
            .any(|l| l.contains("@alpha.test") || l.contains("@beta.test")),
        "addresses in the deliverability log lines"
    );
    Ok(())
}
