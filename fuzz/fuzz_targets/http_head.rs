#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cfgd::fuzzing::http_head(data));
