//! Any status and any bytes through the decoder the client applies to every answer: a page
//! or an error, never a panic; a page only for a 2xx JSON object, and only items with IDs.
#![no_main]

use imagepipeline_operator::ecs::EcsError;
use imagepipeline_operator::ecs::transport::{SNIPPET_BYTES, decode_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, &[u8])| {
    let (status, body) = input;
    match decode_response(status, body) {
        Ok(page) => {
            assert!((200..300).contains(&status));
            assert!(page.items.iter().all(|i| !i.image_pipeline_id.is_empty()));
        }
        Err(EcsError::Decode { status: s, snippet }) => {
            assert_eq!(s, status);
            assert!(snippet.chars().count() <= SNIPPET_BYTES);
        }
        Err(EcsError::Api(e)) => assert_eq!(e.status, status),
        Err(other) => panic!("unexpected error kind: {other:?}"),
    }
});
