//! Any bytes that parse as JSON through the lenient page decoder: never a panic, every
//! decoded item has an ID, and the client's full decoder agrees on 2xx pages.
#![no_main]

use imagepipeline_operator::ecs::model::decode_page;
use imagepipeline_operator::ecs::transport::decode_response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let page = decode_page(&value);
    assert!(page.items.iter().all(|i| !i.image_pipeline_id.is_empty()));
    if let Ok(decoded) = decode_response(200, data) {
        assert_eq!(decoded, page);
    }
});
