//! The RPC percent-encoding round-trips any UTF-8 and leaves only unreserved characters and
//! uppercase `%XX` escapes.
#![no_main]

use imagepipeline_operator::ecs::sign::percent_encode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let enc = percent_encode(s);
    assert!(
        enc.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b))
    );
    for escape in enc.split('%').skip(1) {
        assert!(
            escape
                .bytes()
                .take(2)
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        );
    }
    let back = percent_encoding::percent_decode_str(&enc)
        .decode_utf8()
        .expect("an encoding of UTF-8 decodes as UTF-8");
    assert_eq!(back, s);
});
