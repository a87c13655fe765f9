//! The control socket's request lines, through the daemon's own checks
//! (`server::request::parse`: JSON, version, op, argument types) before any service
//! code: never a panic; a refused line gets an answer that is one JSON line (the
//! protocol is newline-framed); a request that parses names a known op and
//! round-trips through its wire form unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use way2mail_control::server::request::{parse, OPS};
use way2mail_wire::protocol::RequestEnvelope;

fuzz_target!(|line: &[u8]| {
    match parse(line) {
        Err(answered) => {
            let json = serde_json::to_vec(&answered.response).expect("an answer serializes");
            assert!(!json.contains(&b'\n'), "an answer of more than one line");
            assert!(answered.response.error.is_some() && !answered.response.ok);
        }
        Ok(parsed) => {
            assert!(OPS.contains(&parsed.op));
            assert_eq!(parsed.id, parsed.envelope.id);
            let wire = serde_json::to_string(&parsed.envelope).expect("a request serializes");
            assert!(!wire.contains('\n'), "a request of more than one line");
            let again =
                parse(wire.as_bytes()).unwrap_or_else(|_| panic!("{wire} no longer parses"));
            assert_eq!(again.op, parsed.op);
            assert_eq!(again.envelope.request, parsed.envelope.request);
            let twice = serde_json::to_string(&again.envelope).expect("a request serializes");
            assert_eq!(twice, wire, "the wire form is not stable");
        }
    }
    // The envelope type alone, as any other reader of the protocol would use it.
    if let Ok(envelope) = serde_json::from_slice::<RequestEnvelope>(line) {
        let wire = serde_json::to_string(&envelope).expect("a request serializes");
        let back: RequestEnvelope = serde_json::from_str(&wire).expect("its own wire form parses");
        assert_eq!(back.request, envelope.request);
    }
});
