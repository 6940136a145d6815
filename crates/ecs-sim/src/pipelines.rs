//! The `DescribeImagePipelines` action: parameter checks, filtering and paging.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::api::{
    API_DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_PIPELINE_IDS, MAX_TAGS, is_pipeline_name,
};

use super::errors::ApiFailure;
use super::paging::TokenKey;
use super::store::{Query, Store, public_view};

/// Parses the action's parameters into the filter set and page size.
pub fn parse(params: &BTreeMap<String, String>) -> Result<(Query, u32), ApiFailure> {
    let get = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
    let region_id = get("RegionId").ok_or_else(ApiFailure::missing_region)?;
    let page_size = match params.get("MaxResults") {
        None => API_DEFAULT_PAGE_SIZE,
        Some(raw) => raw
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| ApiFailure::invalid_parameter("MaxResults"))?,
    };
    let name = get("Name");
    if name.as_deref().is_some_and(|n| !is_pipeline_name(n)) {
        return Err(ApiFailure::name_malformed());
    }
    let mut ids = BTreeSet::new();
    let mut keys: BTreeMap<usize, String> = BTreeMap::new();
    let mut values: BTreeMap<usize, String> = BTreeMap::new();
    for (k, v) in params {
        if let Some(n) = k.strip_prefix("ImagePipelineId.") {
            let n = index(n, "ImagePipelineId.N")?;
            if n > MAX_PIPELINE_IDS {
                return Err(ApiFailure::too_many_pipeline_ids());
            }
            if !v.is_empty() {
                ids.insert(v.clone());
            }
        } else if let Some(rest) = k.strip_prefix("Tag.") {
            let (n, field) = rest
                .split_once('.')
                .ok_or_else(|| ApiFailure::invalid_parameter(k))?;
            let n = index(n, "Tag.N")?;
            if n > MAX_TAGS {
                return Err(ApiFailure::invalid_parameter("Tag.N"));
            }
            match field {
                "Key" => keys.insert(n, v.clone()),
                "Value" => values.insert(n, v.clone()),
                _ => return Err(ApiFailure::invalid_parameter(k)),
            };
        }
    }
    if let Some(n) = values
        .keys()
        .find(|n| keys.get(n).is_none_or(String::is_empty))
    {
        return Err(ApiFailure::missing_parameter(&format!("Tag.{n}.Key")));
    }
    let mut tags = Vec::new();
    for (n, key) in keys {
        if key.is_empty() {
            return Err(ApiFailure::missing_parameter(&format!("Tag.{n}.Key")));
        }
        tags.push((key, values.remove(&n)));
    }
    let query = Query {
        region_id,
        resource_group_id: get("ResourceGroupId"),
        name,
        ids: ids.into_iter().collect(),
        tags,
    };
    Ok((query, page_size))
}

fn index(raw: &str, what: &str) -> Result<usize, ApiFailure> {
    raw.parse::<usize>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| ApiFailure::invalid_parameter(what))
}

/// Answers one page (without `RequestId`, which the router adds).
pub fn describe(
    store: &Store,
    tokens: &TokenKey,
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiFailure> {
    let (query, page_size) = parse(params)?;
    let fingerprint = query.fingerprint();
    let offset = match params.get("NextToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => tokens
            .decode(token, &fingerprint)
            .ok_or_else(ApiFailure::invalid_next_token)?,
    };
    let items = store.snapshot();
    let matching: Vec<&Value> = items.iter().filter(|i| query.matches(i)).collect();
    let total = matching.len();
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(total);
    let end = start.saturating_add(page_size as usize).min(total);
    let page: Vec<Value> = matching
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|i| public_view(i))
        .collect();
    let next = if end < total {
        tokens.encode(end as u64, &fingerprint)
    } else {
        String::new()
    };
    Ok(json!({
        "TotalCount": total,
        "MaxResults": page_size,
        "NextToken": next,
        "ImagePipeline": {"ImagePipelineSet": page},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn code(pairs: &[(&str, &str)]) -> Option<String> {
        parse(&params(pairs)).err().map(|e| e.code)
    }

    #[test]
    fn parameters_are_checked_like_the_service() {
        assert_eq!(code(&[]).as_deref(), Some("MissingRegionId"));
        assert_eq!(
            code(&[("RegionId", "")]).as_deref(),
            Some("MissingRegionId")
        );
        let r = ("RegionId", "cn-hangzhou");
        for bad in ["0", "501", "-1", "ten", ""] {
            assert_eq!(
                code(&[r, ("MaxResults", bad)]).as_deref(),
                Some("InvalidParameter"),
                "{bad}"
            );
        }
        assert_eq!(
            code(&[r, ("ImagePipelineId.21", "ip-a")]).as_deref(),
            Some("InvalidImagePipelineIdSize.ExceededMaxNumber")
        );
        assert_eq!(
            code(&[r, ("Name", "http://x")]).as_deref(),
            Some("InvalidName.Malformed")
        );
        assert_eq!(
            code(&[r, ("Tag.1.Value", "v")]).as_deref(),
            Some("MissingParameter")
        );
        assert_eq!(
            code(&[r, ("Tag.21.Key", "k")]).as_deref(),
            Some("InvalidParameter")
        );
        assert_eq!(
            code(&[r, ("Tag.x.Key", "k")]).as_deref(),
            Some("InvalidParameter")
        );
    }

    #[test]
    fn defaults_and_tags_parse() {
        let (q, size) = parse(&params(&[
            ("RegionId", "cn-hangzhou"),
            ("Tag.1.Key", "team"),
            ("Tag.1.Value", "a b"),
            ("Tag.2.Key", "env"),
            ("ImagePipelineId.1", "ip-a"),
            ("ImagePipelineId.20", "ip-b"),
        ]))
        .expect("valid");
        assert_eq!(size, 50);
        assert_eq!(q.ids, vec!["ip-a", "ip-b"]);
        assert_eq!(
            q.tags,
            vec![
                ("team".to_string(), Some("a b".to_string())),
                ("env".to_string(), None)
            ]
        );
    }
}
