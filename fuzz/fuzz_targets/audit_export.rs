//! Audit export parsing and offline verification: never panic on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_audit::export::read_export;

fuzz_target!(|data: &[u8]| {
    if let Ok(export) = read_export(data) {
        let _ = export.verify(None);
    }
});
