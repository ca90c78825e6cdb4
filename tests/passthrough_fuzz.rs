//! Replays the passthrough config-filter fuzz entry (`q35dm::passthrough::fuzz::config_filter`)
//! on the Intel I350 fixture with long pseudo-random access streams, with and without
//! `permissive`. Kept apart from tests/passthrough.rs: the streams hit every rate-limited warning
//! site, and that file asserts on those warnings.

fn fixture_config() -> Vec<u8> {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/passthrough/i350/config.txt");
    let mut c = vec![0u8; 4096];
    for line in std::fs::read_to_string(p).unwrap().lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (off, bytes) = line.split_once(':').unwrap();
        let off = usize::from_str_radix(off.trim(), 16).unwrap();
        for (i, b) in bytes.split_whitespace().enumerate() {
            c[off + i] = u8::from_str_radix(b, 16).unwrap();
        }
    }
    c
}

/// Rounds per mode; `Q35DM_PT_FUZZ_ROUNDS=N` runs a longer campaign locally.
fn rounds() -> usize {
    std::env::var("Q35DM_PT_FUZZ_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(4)
}

#[test]
fn fuzz_entry_replays_the_fixture_with_streams() {
    let cfg = fixture_config();
    let mut x: u64 = 0x51ed_270b_3a7c_9d15;
    for permissive in [0u8, 1] {
        for _ in 0..rounds() {
            let mut data = vec![permissive];
            data.extend_from_slice(&cfg);
            for _ in 0..2000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Bias offsets towards the header and capabilities, sizes towards 2 and 4.
                let mut a = x.to_le_bytes();
                if a[7] & 1 == 0 {
                    a[2] = 0;
                }
                data.extend_from_slice(&a);
            }
            q35dm::passthrough::fuzz::config_filter(&data);
        }
    }
}

#[test]
fn fuzz_entry_survives_hostile_device_contents() {
    let mut x: u64 = 0x0123_4567_89ab_cdef;
    for permissive in (0..rounds()).map(|r| (r & 1) as u8) {
        let mut data = vec![permissive];
        for _ in 0..(4096 + 8 * 500) / 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        q35dm::passthrough::fuzz::config_filter(&data);
        // All-ones device (gone), all-zero device.
        let mut ones = vec![permissive];
        ones.extend(std::iter::repeat_n(0xff, 4096 + 800));
        q35dm::passthrough::fuzz::config_filter(&ones);
        q35dm::passthrough::fuzz::config_filter(&vec![permissive; 4096 + 800]);
    }
}
