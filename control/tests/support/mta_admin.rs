//! A stand-in for the MTA's admin socket (`tenant.export`, and one-line answers),
//! and a sink for a streamed answer with the files of the tar archive it holds.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;

use way2mail_control::service::StreamOut;
use way2mail_wire::mta_admin::{
    write_export_item, AdminOp, AdminRequest, AdminResponse, AdminResult, ExportItem,
};
use way2mail_wire::stream::FrameWriter;

/// Answers one `tenant.export` of `tenant` on `path` with `items`, as the MTA
/// streams them.
pub fn serve_export(path: &Path, tenant: &str, items: Vec<ExportItem>) {
    let tenant = tenant.to_owned();
    let listener = UnixListener::bind(path).expect("bind");
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("request");
        let request: AdminRequest = serde_json::from_str(&line).expect("admin request");
        assert!(matches!(request.op, AdminOp::TenantExport { tenant: ref t } if *t == tenant));
        let answer = |result: AdminResult| {
            let mut line = serde_json::to_vec(&AdminResponse {
                v: request.v,
                id: request.id,
                ok: true,
                result: Some(result),
                error: None,
            })
            .expect("json");
            line.push(b'\n');
            line
        };
        let mut out = stream;
        out.write_all(&answer(AdminResult::Stream)).expect("stream");
        let mut frames = FrameWriter::new(out);
        for item in &items {
            write_export_item(&mut frames, item).expect("item");
        }
        let mut out = frames.finish().expect("frames");
        out.write_all(&answer(AdminResult::Exported {
            messages: 0,
            log_records: 0,
        }))
        .expect("final");
    });
}

/// The archive's bytes.
#[derive(Default)]
pub struct Sink(pub Vec<u8>);

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl StreamOut for Sink {
    fn start(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every file of a tar archive: path → text.
pub fn untar(archive: &[u8]) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for entry in tar::Archive::new(archive).entries().expect("tar") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").display().to_string();
        let mut data = String::new();
        entry.read_to_string(&mut data).expect("utf-8");
        files.insert(path, data);
    }
    files
}

/// Answers one request on `path` with `result`, after `check` has looked at the
/// op: a stand-in for the MTA's admin socket for one-line exchanges
/// (`deliverability`, the queue).
pub fn serve_one(path: &Path, check: impl FnOnce(&AdminOp) + Send + 'static, result: AdminResult) {
    let listener = UnixListener::bind(path).expect("bind");
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("request");
        let request: AdminRequest = serde_json::from_str(&line).expect("admin request");
        check(&request.op);
        let mut answer = serde_json::to_vec(&AdminResponse {
            v: request.v,
            id: request.id,
            ok: true,
            result: Some(result),
            error: None,
        })
        .expect("json");
        answer.push(b'\n');
        let mut out = stream;
        out.write_all(&answer).expect("answer");
    });
}
