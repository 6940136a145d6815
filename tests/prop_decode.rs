//! Properties of the paths every response and every request go through: decoding never
//! panics and never invents or drops a pipeline that has an ID; the signature encoding
//! round-trips any UTF-8 and keeps the canonical order.

use std::collections::BTreeMap;

use imagepipeline_operator::ecs::model::decode_page;
use imagepipeline_operator::ecs::sign::{canonical_query, percent_encode, string_to_sign};
use imagepipeline_operator::ecs::transport::{
    SNIPPET_BYTES, decode_response, decode_response_into, signed_form_body,
};
use imagepipeline_operator::ecs::{EcsError, sign};
use imagepipeline_operator::ecs::{ImagePipelineItem, ItemSink, ItemView};
use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Field names of the response, so that random values land where the decoder looks.
const KNOWN_KEYS: &[&str] = &[
    "RequestId",
    "TotalCount",
    "MaxResults",
    "NextToken",
    "ImagePipeline",
    "ImagePipelineSet",
    "ImagePipelineId",
    "Name",
    "SystemDiskSize",
    "DeleteInstanceOnFailure",
    "Tags",
    "Tag",
    "TagKey",
    "TagValue",
    "ToRegionIds",
    "ToRegionId",
    "AddAccounts",
    "AddAccount",
    "Code",
    "Message",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(KNOWN_KEYS).prop_map(str::to_string),
        1 => "\\PC{0,8}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![
            Just("null".to_string()),
            Just(String::new()),
            Just("[\"cn-hangzhou\"]".to_string()),
            Just("[1,".to_string()),
            "\\PC{0,12}",
        ]
        .prop_map(Value::from),
    ]
}

/// Any JSON value, biased towards the response's field names.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A pipeline ID as the service might send it: a string, or a number.
fn pipeline_id() -> impl Strategy<Value = (Value, String)> {
    prop_oneof![
        "ip-[a-z0-9]{1,16}".prop_map(|s| (Value::from(s.clone()), s)),
        any::<u32>().prop_map(|n| (Value::from(n), n.to_string())),
    ]
}

/// One set element: an item with an ID and odd types elsewhere, or something without an ID.
fn element() -> impl Strategy<Value = (Value, Option<String>)> {
    let fields = || proptest::collection::btree_map(key(), json_value(), 0..6);
    prop_oneof![
        3 => (pipeline_id(), fields()).prop_map(|((raw, id), fields)| {
            let mut obj: Map<String, Value> = fields.into_iter().collect();
            obj.insert("ImagePipelineId".into(), raw);
            (Value::Object(obj), Some(id))
        }),
        1 => fields().prop_map(|fields| {
            let mut obj: Map<String, Value> = fields.into_iter().collect();
            let no_id = [Value::Null, json!(""), json!("null"), json!([]), json!({})];
            obj.insert("ImagePipelineId".into(), no_id[obj.len() % no_id.len()].clone());
            (Value::Object(obj), None)
        }),
        1 => leaf().prop_map(|v| (v, None)),
    ]
}

/// Text as the service sends it, now and then an odd value.
fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => "[a-z0-9-]{0,12}".prop_map(Value::from),
        1 => leaf(),
    ]
}

/// An item in the shape the service normally sends (the one the client decodes without a
/// `Value`), now and then with one odd part.
fn usual_item() -> impl Strategy<Value = Value> {
    (
        text(),
        text(),
        prop_oneof![4 => any::<i32>().prop_map(Value::from), 1 => leaf()],
        prop_oneof![4 => any::<bool>().prop_map(Value::from), 1 => leaf()],
        proptest::collection::vec((text(), text()), 0..3),
        proptest::collection::vec(text(), 0..3),
        prop_oneof![4 => Just(None), 1 => json_value().prop_map(Some)],
    )
        .prop_map(|(id, name, size, delete, tags, regions, odd_tags)| {
            let tags: Vec<Value> = tags
                .into_iter()
                .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
                .collect();
            json!({
                "ImagePipelineId": id,
                "Name": name,
                "SystemDiskSize": size,
                "DeleteInstanceOnFailure": delete,
                "Tags": odd_tags.unwrap_or_else(|| json!({"Tag": tags})),
                "ToRegionIds": {"ToRegionId": regions},
                "AddAccounts": {"AddAccount": []},
            })
        })
}

/// Wraps `set` the ways the service (and its documented sample) does.
fn wrapped(set: Vec<Value>, how: u8) -> Value {
    match (how % 3, set.len()) {
        (0, 1) => json!({ "ImagePipelineSet": set[0].clone() }),
        (0 | 1, _) => json!({ "ImagePipelineSet": set }),
        _ => Value::Array(set),
    }
}

/// Collects the items a sink is given.
#[derive(Default)]
struct Collect(Vec<ImagePipelineItem>);

impl ItemSink for Collect {
    fn item(&mut self, item: &ItemView<'_>) {
        self.0.push(item.clone().into_item());
    }
    fn drop_page(&mut self) {
        self.0.clear();
    }
}

/// The page and items of [`decode_response_into`], as [`decode_response`] gives them: both
/// must agree on every body (the same page, the same error).
fn through_a_sink(status: u16, body: &[u8]) -> String {
    let mut sink = Collect::default();
    let result = decode_response_into(status, body, &mut sink);
    let result = match result {
        Ok(mut page) => {
            assert!(page.items.is_empty(), "the items go to the sink");
            page.items = sink.0;
            Ok(page)
        }
        Err(e) => {
            assert!(
                sink.0.is_empty(),
                "an answer that is no page gives no items"
            );
            Err(e)
        }
    };
    format!("{result:?}")
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        // Integration tests have no lib.rs beside them to anchor a regressions file.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_bytes_through_the_client_decoder_are_a_page_or_an_error(
        status in prop_oneof![Just(200u16), Just(400), Just(403), Just(500), Just(502), 100u16..600],
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        prop_assert_eq!(through_a_sink(status, &body), format!("{:?}", decode_response(status, &body)));
        match decode_response(status, &body) {
            Ok(page) => {
                prop_assert!((200..300).contains(&status));
                prop_assert!(page.items.iter().all(|i| !i.image_pipeline_id.is_empty()));
            }
            Err(EcsError::Decode { status: s, snippet }) => {
                prop_assert_eq!(s, status);
                prop_assert!(snippet.chars().count() <= SNIPPET_BYTES);
            }
            Err(EcsError::Api(e)) => prop_assert_eq!(e.status, status),
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    #[test]
    fn any_json_through_the_client_decoder_never_panics_and_never_passes_an_error_status(
        status in prop_oneof![Just(200u16), Just(204), Just(400), Just(500), 100u16..600],
        value in json_value(),
    ) {
        let body = serde_json::to_vec(&value).expect("serializable");
        let value: Value = serde_json::from_slice(&body).expect("valid JSON");
        let page = decode_page(&value);
        prop_assert!(page.items.iter().all(|i| !i.image_pipeline_id.is_empty()));
        prop_assert_eq!(through_a_sink(status, &body), format!("{:?}", decode_response(status, &body)));
        match decode_response(status, &body) {
            Ok(decoded) => {
                prop_assert!((200..300).contains(&status));
                prop_assert!(value.is_object());
                prop_assert_eq!(decoded, page);
            }
            Err(EcsError::Api(e)) => {
                prop_assert_eq!(e.status, status);
                prop_assert!(!e.code.is_empty());
            }
            Err(EcsError::Decode { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    #[test]
    fn pages_with_odd_types_keep_every_item_with_an_id_in_order(
        elements in proptest::collection::vec(element(), 0..8),
        how in any::<u8>(),
        top in proptest::collection::btree_map(
            prop_oneof![Just("TotalCount"), Just("MaxResults"), Just("RequestId"), Just("Extra")]
                .prop_map(str::to_string),
            json_value(),
            0..4,
        ),
    ) {
        let want: Vec<String> = elements.iter().filter_map(|(_, id)| id.clone()).collect();
        let set: Vec<Value> = elements.into_iter().map(|(v, _)| v).collect();
        // `{"ImagePipelineSet": null}` (a lone null element, unwrapped) means no items at all.
        let lone_null = how % 3 == 0 && set.len() == 1 && set[0].is_null();
        let total = if lone_null { 0 } else { set.len() };
        let mut body: Map<String, Value> = top.into_iter().collect();
        body.insert("RequestId".into(), json!("R"));
        body.insert("ImagePipeline".into(), wrapped(set, how));
        let body = Value::Object(body);
        let page = decode_page(&body);
        let got: Vec<String> = page.items.iter().map(|i| i.image_pipeline_id.clone()).collect();
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(page.skipped_items, total - want.len());
        // The same through the bytes and the decoder the client uses (compared with the value
        // parsed back, as JSON text does not round-trip every float's last digit).
        let bytes = serde_json::to_vec(&body).expect("serializable");
        let decoded = decode_response(200, &bytes).expect("a page");
        prop_assert_eq!(through_a_sink(200, &bytes), format!("{:?}", Ok::<_, EcsError>(&decoded)));
        let reparsed: Value = serde_json::from_slice(&bytes).expect("valid JSON");
        prop_assert_eq!(decoded, decode_page(&reparsed));
    }

    #[test]
    fn usual_items_decode_from_the_bytes_as_from_the_parsed_value(
        items in proptest::collection::vec(prop_oneof![3 => usual_item(), 1 => json_value()], 0..6),
    ) {
        let body = json!({
            "RequestId": "r", "TotalCount": 3, "NextToken": "t",
            "ImagePipeline": {"ImagePipelineSet": items},
        });
        let bytes = serde_json::to_vec(&body).expect("serializable");
        let decoded = decode_response(200, &bytes).expect("a page");
        prop_assert_eq!(through_a_sink(200, &bytes), format!("{:?}", Ok::<_, EcsError>(&decoded)));
        let reparsed: Value = serde_json::from_slice(&bytes).expect("valid JSON");
        prop_assert_eq!(decoded, decode_page(&reparsed));
    }

    #[test]
    fn percent_encoding_round_trips_any_utf8_with_uppercase_escapes(s in any::<String>()) {
        let enc = percent_encode(&s);
        prop_assert!(enc.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b)));
        for escape in enc.split('%').skip(1) {
            let hex = &escape[..2];
            prop_assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)), "{}", enc);
        }
        prop_assert_eq!(percent_decode_str(&enc).decode_utf8().expect("utf-8"), s.as_str());
    }

    #[test]
    fn the_signed_form_body_decodes_to_the_sorted_parameters_and_verifies(
        params in proptest::collection::btree_map(".{1,10}", ".{0,16}", 1..10),
        secret in "\\PC{1,30}",
    ) {
        let params: BTreeMap<String, String> = params;
        let body = signed_form_body(&params, &secret);
        let mut decoded = Vec::new();
        for pair in body.split('&') {
            let (k, v) = pair.split_once('=').expect("name=value");
            let k = percent_decode_str(k).decode_utf8().expect("utf-8").into_owned();
            let v = percent_decode_str(v).decode_utf8().expect("utf-8").into_owned();
            decoded.push((k, v));
        }
        let (last_key, signature) = decoded.pop().expect("the signature");
        prop_assert_eq!(last_key, "Signature");
        let keys: Vec<&String> = decoded.iter().map(|(k, _)| k).collect();
        prop_assert!(keys.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()), "sorted by byte order");
        let back: BTreeMap<String, String> = decoded.into_iter().collect();
        prop_assert_eq!(&back, &params);
        prop_assert_eq!(signature, sign::sign_params("POST", &back, &secret));
    }

    #[test]
    fn the_string_to_sign_is_the_encoded_canonical_query(
        params in proptest::collection::btree_map(".{1,10}", ".{0,16}", 0..10),
        method in prop_oneof![Just("GET"), Just("POST")],
    ) {
        let canonical = canonical_query(&params);
        let sts = string_to_sign(method, &params);
        let prefix = format!("{method}&%2F&");
        prop_assert!(sts.starts_with(&prefix));
        let encoded = &sts[prefix.len()..];
        prop_assert!(!encoded.contains('&') && !encoded.contains('='));
        prop_assert_eq!(percent_decode_str(encoded).decode_utf8().expect("utf-8"), canonical.as_str());
        prop_assert_eq!(canonical.matches('&').count(), params.len().saturating_sub(1));
    }
}
