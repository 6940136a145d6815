//! Step 1: validate a query's spec. The same rules as the CRD schema, checked in code, so a spec
//! that slipped past admission (an old CRD, a disabled validation) never costs an API call.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use crate::crd::query::{
    ImagePipelineQuerySpec, MAX_TEMPLATE_ENTRIES, MIN_REFRESH_INTERVAL_SECS, TemplateMetadata,
};
use crate::ecs::filter::{FilterError, PipelineFilter, TagFilter};

/// A spec that passed every check, in the form the later steps use.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSpec {
    /// The API filter, including the page size.
    pub filter: PipelineFilter,
    /// How often to list again.
    pub refresh_interval: Duration,
    /// The name of the credentials Secret, when the query names one.
    pub secret_name: Option<String>,
    /// Labels and annotations for the mirrored objects.
    pub template: TemplateMetadata,
    /// Whether vanished pipelines are deleted.
    pub prune: bool,
}

/// Why a spec is invalid. Every message names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A filter field breaks an API rule.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// `refreshInterval` is not a duration.
    #[error("refreshInterval {0:?} is not a duration such as 30s, 10m or 1h")]
    Interval(String),
    /// `refreshInterval` is shorter than the minimum.
    #[error("refreshInterval {0:?} is shorter than the minimum of {MIN_REFRESH_INTERVAL_SECS}s")]
    IntervalTooShort(String),
    /// `credentials.secretRef.name` is not a Secret name.
    #[error(
        "credentials.secretRef.name {0:?} is not a Secret name (lowercase letters, digits, '-' and '.', at most 253)"
    )]
    SecretName(String),
    /// Too many template labels or annotations.
    #[error(
        "template.metadata.{field} has {count} entries; at most {MAX_TEMPLATE_ENTRIES} are allowed"
    )]
    TooManyEntries {
        /// `labels` or `annotations`.
        field: &'static str,
        /// How many were given.
        count: usize,
    },
    /// A template label or annotation key is not a qualified name.
    #[error(
        "template.metadata.{field} key {key:?} is invalid: an optional DNS subdomain prefix and '/', then a name of at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
    )]
    Key {
        /// `labels` or `annotations`.
        field: &'static str,
        /// The offending key.
        key: String,
    },
    /// A template label value breaks the label value syntax.
    #[error(
        "template.metadata.labels[{key:?}] value {value:?} is invalid: at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
    )]
    LabelValue {
        /// The label key.
        key: String,
        /// The offending value.
        value: String,
    },
}

/// Checks `spec` and turns it into the filter and settings the sync uses.
pub fn validate(spec: &ImagePipelineQuerySpec) -> Result<ValidSpec, SpecError> {
    let filter = PipelineFilter {
        region_id: spec.region_id.clone(),
        resource_group_id: spec.resource_group_id.clone(),
        name: spec.name.clone(),
        image_pipeline_ids: spec.image_pipeline_ids.clone(),
        tags: spec
            .tags
            .iter()
            .map(|t| TagFilter {
                key: t.key.clone(),
                value: t.value.clone(),
            })
            .collect(),
        page_size: spec.page_size,
    };
    filter.validate()?;
    let refresh_interval = parse_interval(&spec.refresh_interval)?;
    let secret_name = match &spec.credentials {
        Some(c) if !is_dns_subdomain(&c.secret_ref.name) => {
            return Err(SpecError::SecretName(c.secret_ref.name.clone()));
        }
        Some(c) => Some(c.secret_ref.name.clone()),
        None => None,
    };
    let template = check_template(spec)?;
    Ok(ValidSpec {
        filter,
        refresh_interval,
        secret_name,
        template,
        prune: spec.prune,
    })
}

/// The labels and annotations of `spec.template`, checked.
fn check_template(spec: &ImagePipelineQuerySpec) -> Result<TemplateMetadata, SpecError> {
    let template = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.clone())
        .unwrap_or_default();
    check_entries("labels", &template.labels)?;
    check_entries("annotations", &template.annotations)?;
    if let Some((key, value)) = template.labels.iter().find(|(_, v)| !is_label_value(v)) {
        return Err(SpecError::LabelValue {
            key: key.clone(),
            value: value.clone(),
        });
    }
    Ok(template)
}

/// The template of `spec` when the template itself is valid, whatever the rest of the spec.
pub fn valid_template(spec: &ImagePipelineQuerySpec) -> Option<TemplateMetadata> {
    check_template(spec).ok()
}

/// Parses a Go-style duration (`30s`, `10m`, `1h30m`) of at least the minimum interval.
pub fn parse_interval(text: &str) -> Result<Duration, SpecError> {
    let parsed = Some(text)
        .filter(|t| matches_duration_pattern(t))
        .and_then(|t| kube::core::Duration::from_str(t).ok())
        .filter(|d| !d.is_negative())
        .ok_or_else(|| SpecError::Interval(text.to_string()))?;
    let duration: Duration = parsed.into();
    if duration < Duration::from_secs(MIN_REFRESH_INTERVAL_SECS) {
        return Err(SpecError::IntervalTooShort(text.to_string()));
    }
    Ok(duration)
}

/// Whether `text` matches the schema's pattern `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`.
fn matches_duration_pattern(text: &str) -> bool {
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let whole = digits(rest);
        if whole == 0 {
            return false;
        }
        rest = &rest[whole..];
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac = digits(after_dot);
            if frac == 0 {
                return false;
            }
            rest = &after_dot[frac..];
        }
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

fn check_entries(field: &'static str, map: &BTreeMap<String, String>) -> Result<(), SpecError> {
    if map.len() > MAX_TEMPLATE_ENTRIES {
        return Err(SpecError::TooManyEntries {
            field,
            count: map.len(),
        });
    }
    match map.keys().find(|k| !is_qualified_name(k)) {
        Some(key) => Err(SpecError::Key {
            field,
            key: key.clone(),
        }),
        None => Ok(()),
    }
}

/// A DNS-1123 label: 1..=63 lowercase letters, digits and '-', alphanumeric at both ends.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1123 subdomain (the syntax of most object names, Secrets included).
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// The name part of a label key, and a non-empty label value: 1..=63 of `[-A-Za-z0-9_.]`,
/// alphanumeric at both ends.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A label or annotation key: `[prefix/]name` with a DNS-subdomain prefix.
pub fn is_qualified_name(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty() && is_dns_subdomain(prefix) && is_qualified_name_part(name)
        }
        None => is_qualified_name_part(key),
    }
}

/// A label value: empty, or a qualified name part.
pub fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_qualified_name_part(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::query::{
        MirrorTemplate, QueryCredentials, QueryTag, SecretReference, TemplateMetadata,
    };

    fn spec() -> ImagePipelineQuerySpec {
        serde_json::from_value(serde_json::json!({"regionId": "cn-hangzhou"})).unwrap()
    }

    #[test]
    fn a_minimal_spec_gets_the_documented_defaults() {
        let valid = validate(&spec()).unwrap();
        assert_eq!(valid.filter.page_size, 500);
        assert_eq!(valid.refresh_interval, Duration::from_secs(600));
        assert!(valid.prune);
        assert_eq!(valid.secret_name, None);
    }

    #[test]
    fn filter_rules_are_the_api_rules() {
        let mut s = spec();
        s.region_id = "Hangzhou".into();
        assert!(matches!(
            validate(&s),
            Err(SpecError::Filter(FilterError::Region(_)))
        ));
        let mut s = spec();
        s.tags = vec![
            QueryTag {
                key: "team".into(),
                value: None,
            },
            QueryTag {
                key: "team".into(),
                value: Some("a".into()),
            },
        ];
        let err = validate(&s).unwrap_err();
        assert!(err.to_string().contains("more than once"), "{err}");
        let mut s = spec();
        s.page_size = 0;
        assert!(validate(&s).is_err());
    }

    #[test]
    fn refresh_intervals_are_go_durations_of_at_least_thirty_seconds() {
        for ok in ["30s", "10m", "1h", "1h30m", "90s", "0.5m"] {
            assert!(parse_interval(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            parse_interval("29s"),
            Err(SpecError::IntervalTooShort("29s".into()))
        );
        for bad in ["", "10", "ten minutes", "-1m", "+1m", "1d", "1.m", "m"] {
            assert_eq!(parse_interval(bad), Err(SpecError::Interval(bad.into())));
        }
    }

    #[test]
    fn secret_names_must_be_dns_subdomains() {
        let mut s = spec();
        s.credentials = Some(QueryCredentials {
            secret_ref: SecretReference {
                name: "Team_AK".into(),
            },
        });
        assert_eq!(
            validate(&s).unwrap_err(),
            SpecError::SecretName("Team_AK".into())
        );
        s.credentials = Some(QueryCredentials {
            secret_ref: SecretReference {
                name: "team-ak.v2".into(),
            },
        });
        assert_eq!(
            validate(&s).unwrap().secret_name.as_deref(),
            Some("team-ak.v2")
        );
    }

    #[test]
    fn template_labels_follow_kubernetes_label_syntax() {
        let with_labels = |pairs: &[(&str, &str)]| {
            let mut s = spec();
            s.template = Some(MirrorTemplate {
                metadata: Some(TemplateMetadata {
                    labels: pairs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    annotations: BTreeMap::new(),
                }),
            });
            validate(&s)
        };
        assert!(with_labels(&[("team", "payments"), ("example.com/tier", "")]).is_ok());
        assert!(matches!(
            with_labels(&[("bad key", "x")]),
            Err(SpecError::Key {
                field: "labels",
                ..
            })
        ));
        assert!(matches!(
            with_labels(&[("/x", "x")]),
            Err(SpecError::Key { .. })
        ));
        assert!(matches!(
            with_labels(&[("team", "-payments")]),
            Err(SpecError::LabelValue { .. })
        ));
        let many: Vec<(String, String)> = (0..17).map(|i| (format!("k{i}"), "v".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert!(matches!(
            with_labels(&many),
            Err(SpecError::TooManyEntries { count: 17, .. })
        ));
    }
}
