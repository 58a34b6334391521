//! Fuzzes lsvfs::fuzzing::policy: no input may panic, allocate by an
//! unchecked length or loop.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    lsvfs::fuzzing::policy(data);
});
