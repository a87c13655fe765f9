//! The CLI's connection to `way2mail-control`: the socket, the session token and the
//! reason, sent with every request. It connects on the first request, so that usage
//! errors (no terminal, nothing to update) never touch the daemon, and turns the
//! client's errors into the CLI's failures (exit 3 when the daemon cannot be reached).

use std::path::{Path, PathBuf};
use std::time::Duration;

use way2mail_wire::client::{Auth, ClientError, ControlClient};
use way2mail_wire::protocol::{ErrorCode, Request, Response};

use super::{render, Failure};

const DEV_SOCKET: &str = "./var/control.sock";
const PRODUCTION_SOCKET: &str = "/run/way2mail/control.sock";

/// Long enough for argon2 at login under load; a hung daemon still ends the wait.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) struct Session {
    socket: PathBuf,
    client: Option<ControlClient>,
    pub(super) auth: Auth,
    /// Where the token came from, when it came from the token file.
    pub(super) token_file: Option<PathBuf>,
    json: bool,
}

impl Session {
    /// `socket`: the `--socket` flag, else `$WAY2MAIL_SOCKET`, else the dev socket
    /// when it exists or the production one when only that does.
    pub(super) fn new(
        socket: Option<PathBuf>,
        auth: Auth,
        token_file: Option<PathBuf>,
        json: bool,
    ) -> Session {
        Session {
            socket: socket_path(socket),
            client: None,
            auth,
            token_file,
            json,
        }
    }

    pub(super) fn call(&mut self, request: Request) -> Result<Response, Failure> {
        let client = match &mut self.client {
            Some(client) => client,
            None => self.client.insert(
                ControlClient::connect(&self.socket, REQUEST_TIMEOUT).map_err(|e| match e {
                    ClientError::Connect { source, .. } => Failure::Unreachable {
                        path: self.socket.display().to_string(),
                        reason: source.to_string(),
                    },
                    other => Failure::Failed(other.to_string()),
                })?,
            ),
        };
        client.call(request, &self.auth).map_err(failure)
    }

    fn client(&mut self) -> Result<&mut ControlClient, Failure> {
        if self.client.is_none() {
            let client =
                ControlClient::connect(&self.socket, REQUEST_TIMEOUT).map_err(|e| match e {
                    ClientError::Connect { source, .. } => Failure::Unreachable {
                        path: self.socket.display().to_string(),
                        reason: source.to_string(),
                    },
                    other => Failure::Failed(other.to_string()),
                })?;
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| Failure::Failed("not connected".into()))
    }

    /// A streamed request: the streamed bytes go to `sink`; the final answer is
    /// returned.
    pub(super) fn call_stream(
        &mut self,
        request: Request,
        sink: &mut dyn std::io::Write,
    ) -> Result<Response, Failure> {
        let auth = self.auth.clone();
        self.client()?
            .call_stream(request, &auth, sink)
            .map_err(failure)
    }

    pub(super) fn json(&self) -> bool {
        self.json
    }

    /// Prints a result: the raw JSON with `--json`, else `human`.
    pub(super) fn show(
        &self,
        response: &Response,
        human: impl FnOnce() -> String,
    ) -> Result<(), Failure> {
        if self.json {
            let text = serde_json::to_string_pretty(response)
                .map_err(|e| Failure::Failed(format!("cannot print the result: {e}")))?;
            println!("{text}");
        } else {
            print!("{}", human());
        }
        Ok(())
    }

    /// Sends a request and prints `done`, then the result when there is more than `Done`.
    pub(super) fn simple(&mut self, request: Request, done: String) -> Result<(), Failure> {
        let response = self.call(request)?;
        self.show(&response, || match &response {
            Response::Done => format!("{done}\n"),
            other => format!("{done}\n\n{}", render::human(other)),
        })
    }
}

fn failure(e: ClientError) -> Failure {
    match e {
        ClientError::Remote(body) => {
            // A hint only where the daemon's own message does not already say it.
            let hint = match body.code {
                ErrorCode::Unauthenticated if !body.message.contains("login") => {
                    "\nhint: log in first: way2mail login --name NAME"
                }
                ErrorCode::ReasonRequired if !body.message.contains("--reason") => {
                    "\nhint: say why with --reason TEXT"
                }
                _ => "",
            };
            Failure::Failed(format!("{}{hint}", body.message))
        }
        ClientError::Connect { path, source } => Failure::Unreachable {
            path: path.display().to_string(),
            reason: source.to_string(),
        },
        other => Failure::Failed(other.to_string()),
    }
}

fn socket_path(flag: Option<PathBuf>) -> PathBuf {
    let env = std::env::var_os("WAY2MAIL_SOCKET").filter(|v| !v.is_empty());
    if let Some(path) = flag.or(env.map(PathBuf::from)) {
        return path;
    }
    if !Path::new(DEV_SOCKET).exists() && Path::new(PRODUCTION_SOCKET).exists() {
        PathBuf::from(PRODUCTION_SOCKET)
    } else {
        PathBuf::from(DEV_SOCKET)
    }
}
