//! way2mail-control's configuration file: any text either parses into a `Config`
//! or gives an error, and a parsed `Config` validates or is refused, never a panic
//! (paths are only checked as text: nothing here opens a file).

#![no_main]

use libfuzzer_sys::fuzz_target;
use way2mail_control::server::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text) {
        let _ = config.validate();
    }
});
