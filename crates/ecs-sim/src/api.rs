//! What the real service documents about `DescribeImagePipelines` (ECS API 2014-05-26): its
//! name, version, limits and the syntax of IDs and names. Defined here, from the API's
//! documentation, and not taken from the client, so that a client mistake cannot hide in the
//! simulator that is meant to catch it.

/// The API version of ECS.
pub const ECS_API_VERSION: &str = "2014-05-26";
/// The action the simulator serves.
pub const DESCRIBE_IMAGE_PIPELINES: &str = "DescribeImagePipelines";
/// Most `ImagePipelineId.N` values in one request.
pub const MAX_PIPELINE_IDS: usize = 20;
/// Most `Tag.N` pairs in one request.
pub const MAX_TAGS: usize = 20;
/// Largest `MaxResults`.
pub const MAX_PAGE_SIZE: u32 = 500;
/// `MaxResults` when a request does not set it.
pub const API_DEFAULT_PAGE_SIZE: u32 = 50;

/// An image template ID: `ip-` and 1 to 64 lowercase letters and digits.
pub fn is_pipeline_id(s: &str) -> bool {
    match s.strip_prefix("ip-") {
        Some(rest) => {
            (1..=64).contains(&rest.len())
                && rest
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        }
        None => false,
    }
}

/// An image template name: 2 to 128 characters, starting with a letter, not with `http://` or
/// `https://`, made of letters, digits, `:`, `_`, `.` and `-`.
pub fn is_pipeline_name(s: &str) -> bool {
    let mut chars = s.chars();
    let first_is_letter = chars.next().is_some_and(char::is_alphabetic);
    let len = s.chars().count();
    first_is_letter
        && (2..=128).contains(&len)
        && !(s.starts_with("http://") || s.starts_with("https://"))
        && s.chars().all(|c| c.is_alphanumeric() || ":_.-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_follow_the_documented_syntax() {
        assert!(is_pipeline_id("ip-2ze5tsl5bp6nf2b3"));
        assert!(!is_pipeline_id("ip-"));
        assert!(!is_pipeline_id("ip-ABC"));
        assert!(!is_pipeline_id(&format!("ip-{}", "a".repeat(65))));
        assert!(is_pipeline_name("golden-image_1.0:x"));
        assert!(!is_pipeline_name("g"));
        assert!(!is_pipeline_name("1golden"));
        assert!(!is_pipeline_name("http://golden"));
        assert!(!is_pipeline_name("golden image"));
    }
}
