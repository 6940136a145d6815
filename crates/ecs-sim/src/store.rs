//! The simulated pipelines and the filters of `DescribeImagePipelines`.
//!
//! Items are kept as the JSON the API returns (PascalCase `ImagePipelineSet` items) plus a
//! `RegionId` used for filtering and never returned.

use std::sync::{Arc, RwLock};

use serde_json::Value;

/// The items of a running simulator; swapped whole, so a listing sees one consistent set.
#[derive(Debug, Default)]
pub struct Store {
    items: RwLock<Arc<Vec<Value>>>,
}

impl Store {
    /// A store holding `items`.
    pub fn new(items: Vec<Value>) -> Self {
        Self {
            items: RwLock::new(Arc::new(items)),
        }
    }

    /// Replaces every item.
    pub fn set(&self, items: Vec<Value>) {
        if let Ok(mut guard) = self.items.write() {
            *guard = Arc::new(items);
        }
    }

    /// The current items.
    pub fn snapshot(&self) -> Arc<Vec<Value>> {
        self.items
            .read()
            .map(|g| Arc::clone(&g))
            .unwrap_or_default()
    }
}

/// The filters of one request. Every given filter must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// `RegionId`.
    pub region_id: String,
    /// `ResourceGroupId`.
    pub resource_group_id: Option<String>,
    /// `Name`, exact.
    pub name: Option<String>,
    /// `ImagePipelineId.N`; empty means any.
    pub ids: Vec<String>,
    /// `Tag.N.Key` / `Tag.N.Value`; a key without value matches any value.
    pub tags: Vec<(String, Option<String>)>,
}

impl Query {
    /// Whether `item` passes every filter.
    pub fn matches(&self, item: &Value) -> bool {
        str_field(item, "RegionId") == Some(self.region_id.as_str())
            && self
                .resource_group_id
                .as_deref()
                .is_none_or(|rg| str_field(item, "ResourceGroupId") == Some(rg))
            && self
                .name
                .as_deref()
                .is_none_or(|n| str_field(item, "Name") == Some(n))
            && (self.ids.is_empty()
                || str_field(item, "ImagePipelineId")
                    .is_some_and(|id| self.ids.iter().any(|want| want == id)))
            && self.tags.iter().all(|(key, value)| {
                tags_of(item)
                    .any(|(k, v)| k == key && value.as_deref().is_none_or(|want| want == v))
            })
    }

    /// A canonical text of the filter set (IDs and tags sorted), what a NextToken is bound to.
    pub fn fingerprint(&self) -> String {
        let mut ids = self.ids.clone();
        ids.sort();
        ids.dedup();
        let mut tags = self.tags.clone();
        tags.sort();
        serde_json::json!([self.region_id, self.resource_group_id, self.name, ids, tags,])
            .to_string()
    }
}

/// The item as the API returns it: everything but the filtering-only `RegionId`.
pub fn public_view(item: &Value) -> Value {
    let mut out = item.clone();
    if let Some(obj) = out.as_object_mut() {
        obj.remove("RegionId");
    }
    out
}

fn str_field<'a>(item: &'a Value, key: &str) -> Option<&'a str> {
    item.get(key).and_then(Value::as_str)
}

/// `(TagKey, TagValue)` pairs of `Tags: {Tag: [...]}` (or a bare `Tags: [...]`).
fn tags_of(item: &Value) -> impl Iterator<Item = (&str, &str)> {
    let tags = item.get("Tags");
    let list = tags
        .and_then(|t| t.get("Tag"))
        .or(tags)
        .and_then(Value::as_array);
    list.into_iter().flatten().filter_map(|t| {
        let k = t.get("TagKey").and_then(Value::as_str)?;
        let v = t.get("TagValue").and_then(Value::as_str).unwrap_or("");
        Some((k, v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item() -> Value {
        json!({
            "ImagePipelineId": "ip-abc",
            "Name": "golden",
            "ResourceGroupId": "rg-1",
            "RegionId": "cn-hangzhou",
            "Tags": {"Tag": [{"TagKey": "team", "TagValue": "pay ments"}, {"TagKey": "env", "TagValue": ""}]}
        })
    }

    fn query() -> Query {
        Query {
            region_id: "cn-hangzhou".into(),
            ..Query::default()
        }
    }

    #[test]
    fn every_filter_must_match() {
        let i = item();
        assert!(query().matches(&i));
        let cases: Vec<(Query, bool)> = vec![
            (
                Query {
                    region_id: "cn-beijing".into(),
                    ..query()
                },
                false,
            ),
            (
                Query {
                    resource_group_id: Some("rg-1".into()),
                    ..query()
                },
                true,
            ),
            (
                Query {
                    resource_group_id: Some("rg-2".into()),
                    ..query()
                },
                false,
            ),
            (
                Query {
                    name: Some("golden".into()),
                    ..query()
                },
                true,
            ),
            (
                Query {
                    name: Some("gold".into()),
                    ..query()
                },
                false,
            ),
            (
                Query {
                    ids: vec!["ip-x".into(), "ip-abc".into()],
                    ..query()
                },
                true,
            ),
            (
                Query {
                    ids: vec!["ip-x".into()],
                    ..query()
                },
                false,
            ),
            (
                Query {
                    tags: vec![("team".into(), Some("pay ments".into()))],
                    ..query()
                },
                true,
            ),
            (
                Query {
                    tags: vec![("team".into(), None)],
                    ..query()
                },
                true,
            ),
            (
                Query {
                    tags: vec![("team".into(), Some("pay".into()))],
                    ..query()
                },
                false,
            ),
            (
                Query {
                    tags: vec![("team".into(), None), ("owner".into(), None)],
                    ..query()
                },
                false,
            ),
            (
                Query {
                    tags: vec![("env".into(), Some(String::new()))],
                    ..query()
                },
                true,
            ),
        ];
        for (q, expected) in cases {
            assert_eq!(q.matches(&i), expected, "{q:?}");
        }
    }

    #[test]
    fn region_id_is_never_returned() {
        let v = public_view(&item());
        assert!(v.get("RegionId").is_none());
        assert_eq!(v["ImagePipelineId"], "ip-abc");
    }

    #[test]
    fn fingerprints_ignore_the_order_of_ids_and_tags() {
        let a = Query {
            ids: vec!["ip-b".into(), "ip-a".into()],
            ..query()
        };
        let b = Query {
            ids: vec!["ip-a".into(), "ip-b".into()],
            ..query()
        };
        assert_eq!(a.fingerprint(), b.fingerprint());
        let c = Query {
            name: Some("x".into()),
            ..query()
        };
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
