//! Asking the operator: passwords from the terminal with echo off, TOTP codes and
//! confirmations with echo on, and `--password-stdin` for scripts. Prompts go to
//! `/dev/tty`, never stdout, so `--json` output stays clean; without a terminal
//! (cron, CI) nothing is asked and the caller gets a usage error instead.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};

use rustix::termios::{self, LocalModes, OptionalActions, Termios};
use zeroize::Zeroizing;

/// Longest secret or answer read; a password is not a file.
const MAX_INPUT: u64 = 4096;

/// The controlling terminal, when there is one.
pub fn tty() -> Option<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()
}

/// Asks on the terminal with echo off. The newline the operator types is still
/// shown (`ECHONL`), so the next prompt starts on its own line.
pub fn secret(tty: &mut File, prompt: &str) -> io::Result<Zeroizing<String>> {
    tty.write_all(prompt.as_bytes())?;
    tty.flush()?;
    let saved = termios::tcgetattr(&*tty)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    termios::tcsetattr(&*tty, OptionalActions::Now, &quiet)?;
    let restore = Restore { tty, saved };
    let line = read_line(&mut *restore.tty);
    drop(restore);
    line
}

/// Asks on the terminal with echo on.
pub fn ask(tty: &mut File, prompt: &str) -> io::Result<String> {
    tty.write_all(prompt.as_bytes())?;
    tty.flush()?;
    Ok(read_line(tty)?.to_string())
}

/// The first line of standard input (`--password-stdin`), without its newline.
pub fn stdin_line() -> io::Result<Zeroizing<String>> {
    let line = read_line(&mut io::stdin().lock())?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "standard input held no password",
        ));
    }
    Ok(line)
}

/// Puts the terminal back even when reading failed.
struct Restore<'a> {
    tty: &'a mut File,
    saved: Termios,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(&*self.tty, OptionalActions::Now, &self.saved);
    }
}

fn read_line(input: &mut impl Read) -> io::Result<Zeroizing<String>> {
    // Byte by byte through a small reader: nothing past the newline is consumed,
    // so a script can pipe more after the password.
    let mut bytes = Zeroizing::new(Vec::new());
    let mut reader = BufReader::with_capacity(1, input.take(MAX_INPUT));
    reader.read_until(b'\n', &mut bytes)?;
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "input is not UTF-8"))?;
    Ok(Zeroizing::new(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_line_only() {
        let mut input: &[u8] = b"s3cret\r\nnext\n";
        assert_eq!(read_line(&mut input).expect("line").as_str(), "s3cret");
        assert_eq!(input, b"next\n");
        let mut bad: &[u8] = b"\xff\n";
        assert!(read_line(&mut bad).is_err());
    }
}
