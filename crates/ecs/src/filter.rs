//! The typed filter of `DescribeImagePipelines` and its translation to RPC parameters.

use std::collections::BTreeSet;

/// Largest number of `ImagePipelineId.N` values the API accepts.
pub const MAX_PIPELINE_IDS: usize = 20;
/// Largest number of `Tag.N` pairs the API accepts.
pub const MAX_TAGS: usize = 20;
/// Largest `MaxResults` the API accepts; also our default, because it needs the fewest calls.
pub const MAX_PAGE_SIZE: u32 = 500;
/// The API's own default `MaxResults` (what a caller gets without setting it).
pub const API_DEFAULT_PAGE_SIZE: u32 = 50;

/// One tag condition: pipelines must carry `key` (and `value`, when given).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagFilter {
    /// Tag key, 1..=128 characters.
    pub key: String,
    /// Tag value; `None` matches any value of `key`.
    pub value: Option<String>,
}

/// What to list: the filters of `DescribeImagePipelines` plus the page size.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PipelineFilter {
    /// `RegionId` (required), e.g. `cn-hangzhou`.
    pub region_id: String,
    /// `ResourceGroupId`.
    pub resource_group_id: Option<String>,
    /// `Name`: exact template name.
    pub name: Option<String>,
    /// `ImagePipelineId.N`: at most 20 distinct `ip-` IDs.
    pub image_pipeline_ids: Vec<String>,
    /// `Tag.N.Key` / `Tag.N.Value`: at most 20, distinct non-empty keys; all must match.
    pub tags: Vec<TagFilter>,
    /// `MaxResults` per page, 1..=500.
    pub page_size: u32,
}

/// Why a filter was refused before any call was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The region ID is empty or not of the form `cn-hangzhou`.
    #[error("regionId {0:?} is not a region ID (lowercase words joined by '-', e.g. cn-hangzhou)")]
    Region(String),
    /// The resource group ID is malformed.
    #[error("resourceGroupId {0:?} is not a resource group ID (e.g. rg-acfm2abc)")]
    ResourceGroup(String),
    /// The name breaks the API's naming rules.
    #[error(
        "name {0:?} is invalid: 2 to 128 characters, starting with a letter, not with http:// or https://, containing only letters, digits, ':', '_', '.' and '-'"
    )]
    Name(String),
    /// More than 20 pipeline IDs.
    #[error("at most {MAX_PIPELINE_IDS} imagePipelineIds may be given, got {0}")]
    TooManyIds(usize),
    /// A pipeline ID is not of the form `ip-...`.
    #[error(
        "imagePipelineId {0:?} is not an image pipeline ID (ip- followed by lowercase letters and digits)"
    )]
    Id(String),
    /// The same pipeline ID twice.
    #[error("imagePipelineId {0:?} is listed more than once")]
    DuplicateId(String),
    /// More than 20 tags.
    #[error("at most {MAX_TAGS} tags may be given, got {0}")]
    TooManyTags(usize),
    /// An empty or over-long tag key, or an over-long value.
    #[error("tag key {0:?} is invalid: keys are 1 to 128 characters and values at most 128")]
    Tag(String),
    /// The same tag key twice.
    #[error("tag key {0:?} is listed more than once")]
    DuplicateTag(String),
    /// Page size outside 1..=500.
    #[error("pageSize {0} is out of range: it must be between 1 and {MAX_PAGE_SIZE}")]
    PageSize(u32),
}

/// `cn-hangzhou`, `ap-southeast-1`, `cn-shanghai-finance-1`: lowercase words joined by `-`.
pub fn is_region_id(s: &str) -> bool {
    let mut parts = s.split('-');
    let first_ok = parts
        .next()
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()));
    let rest: Vec<&str> = parts.collect();
    first_ok
        && !rest.is_empty()
        && s.len() <= 64
        && rest.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// `ip-` followed by 1..=64 lowercase letters and digits.
pub fn is_pipeline_id(s: &str) -> bool {
    s.strip_prefix("ip-").is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 64
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// `rg-` followed by 1..=64 letters and digits.
pub fn is_resource_group_id(s: &str) -> bool {
    s.strip_prefix("rg-").is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// The API's rules for image template names.
pub fn is_pipeline_name(s: &str) -> bool {
    let len = s.chars().count();
    (2..=128).contains(&len)
        && s.chars().next().is_some_and(char::is_alphabetic)
        && !s.starts_with("http://")
        && !s.starts_with("https://")
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ':' | '_' | '.' | '-'))
}

impl PipelineFilter {
    /// A filter for every pipeline of `region_id`, with the largest page size.
    pub fn region(region_id: impl Into<String>) -> Self {
        Self {
            region_id: region_id.into(),
            resource_group_id: None,
            name: None,
            image_pipeline_ids: Vec::new(),
            tags: Vec::new(),
            page_size: MAX_PAGE_SIZE,
        }
    }

    /// Checks every bound the API enforces, so a bad filter never costs a call.
    pub fn validate(&self) -> Result<(), FilterError> {
        if !is_region_id(&self.region_id) {
            return Err(FilterError::Region(self.region_id.clone()));
        }
        if let Some(rg) = &self.resource_group_id {
            if !is_resource_group_id(rg) {
                return Err(FilterError::ResourceGroup(rg.clone()));
            }
        }
        if let Some(name) = &self.name {
            if !is_pipeline_name(name) {
                return Err(FilterError::Name(name.clone()));
            }
        }
        if self.image_pipeline_ids.len() > MAX_PIPELINE_IDS {
            return Err(FilterError::TooManyIds(self.image_pipeline_ids.len()));
        }
        let mut seen = BTreeSet::new();
        for id in &self.image_pipeline_ids {
            if !is_pipeline_id(id) {
                return Err(FilterError::Id(id.clone()));
            }
            if !seen.insert(id) {
                return Err(FilterError::DuplicateId(id.clone()));
            }
        }
        if self.tags.len() > MAX_TAGS {
            return Err(FilterError::TooManyTags(self.tags.len()));
        }
        let mut keys = BTreeSet::new();
        for tag in &self.tags {
            let value_len = tag.value.as_deref().map_or(0, |v| v.chars().count());
            if tag.key.is_empty() || tag.key.chars().count() > 128 || value_len > 128 {
                return Err(FilterError::Tag(tag.key.clone()));
            }
            if !keys.insert(&tag.key) {
                return Err(FilterError::DuplicateTag(tag.key.clone()));
            }
        }
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(FilterError::PageSize(self.page_size));
        }
        Ok(())
    }

    /// The action parameters of the first page (without `NextToken` and the common ones).
    pub fn to_params(&self) -> Vec<(String, String)> {
        let mut params = vec![
            ("RegionId".to_string(), self.region_id.clone()),
            ("MaxResults".to_string(), self.page_size.to_string()),
        ];
        if let Some(rg) = &self.resource_group_id {
            params.push(("ResourceGroupId".into(), rg.clone()));
        }
        if let Some(name) = &self.name {
            params.push(("Name".into(), name.clone()));
        }
        for (i, id) in self.image_pipeline_ids.iter().enumerate() {
            params.push((format!("ImagePipelineId.{}", i + 1), id.clone()));
        }
        for (i, tag) in self.tags.iter().enumerate() {
            params.push((format!("Tag.{}.Key", i + 1), tag.key.clone()));
            if let Some(value) = &tag.value {
                params.push((format!("Tag.{}.Value", i + 1), value.clone()));
            }
        }
        params
    }

    /// The same filter in a canonical order (IDs and tags sorted), so that two queries that
    /// ask the same question share one listing.
    pub fn normalized(&self) -> Self {
        let mut f = self.clone();
        f.image_pipeline_ids.sort();
        f.tags.sort();
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> PipelineFilter {
        let mut f = PipelineFilter::region("cn-hangzhou");
        f.resource_group_id = Some("rg-acfm2abc".into());
        f.name = Some("golden-base".into());
        f.image_pipeline_ids = vec!["ip-2ze5tsl5bp6nf2b3".into()];
        f.tags = vec![TagFilter {
            key: "team".into(),
            value: Some("pay ments".into()),
        }];
        f
    }

    #[test]
    fn a_full_filter_becomes_the_api_parameters() {
        let f = ok();
        assert_eq!(f.validate(), Ok(()));
        let p = f.to_params();
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("RegionId"), Some("cn-hangzhou"));
        assert_eq!(get("MaxResults"), Some("500"));
        assert_eq!(get("ResourceGroupId"), Some("rg-acfm2abc"));
        assert_eq!(get("Name"), Some("golden-base"));
        assert_eq!(get("ImagePipelineId.1"), Some("ip-2ze5tsl5bp6nf2b3"));
        assert_eq!(get("Tag.1.Key"), Some("team"));
        assert_eq!(get("Tag.1.Value"), Some("pay ments"));
    }

    #[test]
    fn a_tag_without_value_sends_only_the_key() {
        let mut f = PipelineFilter::region("cn-hangzhou");
        f.tags = vec![TagFilter {
            key: "env".into(),
            value: None,
        }];
        let p = f.to_params();
        assert!(p.iter().any(|(k, v)| k == "Tag.1.Key" && v == "env"));
        assert!(!p.iter().any(|(k, _)| k == "Tag.1.Value"));
    }

    #[test]
    fn out_of_range_filters_are_refused() {
        type Mutation = Box<dyn Fn(&mut PipelineFilter)>;
        let cases: Vec<(Mutation, FilterError)> = vec![
            (
                Box::new(|f| f.region_id = "Hangzhou".into()),
                FilterError::Region("Hangzhou".into()),
            ),
            (
                Box::new(|f| f.region_id = String::new()),
                FilterError::Region(String::new()),
            ),
            (Box::new(|f| f.page_size = 0), FilterError::PageSize(0)),
            (Box::new(|f| f.page_size = 501), FilterError::PageSize(501)),
            (
                Box::new(|f| f.name = Some("1abc".into())),
                FilterError::Name("1abc".into()),
            ),
            (
                Box::new(|f| f.name = Some("http://x".into())),
                FilterError::Name("http://x".into()),
            ),
            (
                Box::new(|f| f.image_pipeline_ids = vec!["m-abc".into()]),
                FilterError::Id("m-abc".into()),
            ),
            (
                Box::new(|f| f.image_pipeline_ids = vec!["ip-a".into(), "ip-a".into()]),
                FilterError::DuplicateId("ip-a".into()),
            ),
            (
                Box::new(|f| f.image_pipeline_ids = (0..21).map(|i| format!("ip-{i}")).collect()),
                FilterError::TooManyIds(21),
            ),
            (
                Box::new(|f| {
                    f.tags = vec![TagFilter {
                        key: String::new(),
                        value: None,
                    }]
                }),
                FilterError::Tag(String::new()),
            ),
            (
                Box::new(|f| {
                    f.tags = vec![
                        TagFilter {
                            key: "a".into(),
                            value: None,
                        },
                        TagFilter {
                            key: "a".into(),
                            value: Some("b".into()),
                        },
                    ]
                }),
                FilterError::DuplicateTag("a".into()),
            ),
            (
                Box::new(|f| {
                    f.tags = (0..21)
                        .map(|i| TagFilter {
                            key: format!("k{i}"),
                            value: None,
                        })
                        .collect()
                }),
                FilterError::TooManyTags(21),
            ),
        ];
        for (mutate, expected) in cases {
            let mut f = ok();
            mutate(&mut f);
            assert_eq!(f.validate(), Err(expected));
        }
    }

    #[test]
    fn region_ids_of_every_shape_are_accepted() {
        for r in [
            "cn-hangzhou",
            "ap-southeast-1",
            "cn-shanghai-finance-1",
            "us-west-1",
        ] {
            assert!(is_region_id(r), "{r}");
        }
        for r in [
            "cn",
            "cn-",
            "-cn",
            "CN-hangzhou",
            "cn_hangzhou",
            "cn-hang zhou",
        ] {
            assert!(!is_region_id(r), "{r}");
        }
    }

    #[test]
    fn normalized_filters_compare_equal_regardless_of_order() {
        let mut a = PipelineFilter::region("cn-hangzhou");
        a.image_pipeline_ids = vec!["ip-b".into(), "ip-a".into()];
        let mut b = a.clone();
        b.image_pipeline_ids.reverse();
        assert_ne!(a, b);
        assert_eq!(a.normalized(), b.normalized());
    }
}
