//! Arbitrary parameter maps through the signer: the string to sign is `METHOD&%2F&` and the
//! encoded canonical query, the signed form body decodes back to the parameters in byte order,
//! and the signature it carries verifies.
#![no_main]

use std::collections::BTreeMap;

use imagepipeline_operator::ecs::sign::{canonical_query, sign_params, string_to_sign};
use imagepipeline_operator::ecs::transport::signed_form_body;
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;

fn decode(s: &str) -> String {
    percent_decode_str(s)
        .decode_utf8()
        .expect("UTF-8")
        .into_owned()
}

fuzz_target!(|input: (BTreeMap<String, String>, String)| {
    let (params, secret) = input;
    let sts = string_to_sign("POST", &params);
    let encoded = sts.strip_prefix("POST&%2F&").expect("method and path");
    assert!(!encoded.contains('&') && !encoded.contains('='));
    assert_eq!(decode(encoded), canonical_query(&params));

    let body = signed_form_body(&params, &secret);
    let mut pairs: Vec<(String, String)> = body
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("name=value");
            (decode(k), decode(v))
        })
        .collect();
    let (name, signature) = pairs.pop().expect("the signature comes last");
    assert_eq!(name, "Signature");
    assert!(
        pairs
            .windows(2)
            .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes())
    );
    let back: BTreeMap<String, String> = pairs.into_iter().collect();
    assert_eq!(back, params);
    assert_eq!(signature, sign_params("POST", &back, &secret));
});
