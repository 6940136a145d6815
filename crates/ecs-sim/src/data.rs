//! Pipelines to serve: a deterministic generator, a small realistic sample, and `--data` files.

use std::path::Path;

use serde_json::{Value, json};

use super::errors::SimError;

const REGIONS: [&str; 4] = ["cn-hangzhou", "cn-shanghai", "cn-beijing", "ap-southeast-1"];
const GROUPS: [&str; 3] = [
    "rg-acfmpayments01",
    "rg-acfmsearch0002",
    "rg-acfmplatform03",
];
const TEAMS: [&str; 4] = ["payments", "search", "platform", "data science"];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];
const BASES: [&str; 3] = ["ubuntu", "alinux", "centos"];
const TYPES: [&str; 4] = [
    "ecs.g7.large",
    "ecs.c7.xlarge",
    "ecs.g6.large",
    "ecs.r7.large",
];

/// splitmix64: a tiny PRNG whose output never changes between versions of anything.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        let i = (self.next() % from.len().max(1) as u64) as usize;
        from.get(i).copied().unwrap_or_default()
    }

    fn alnum(&mut self, len: usize) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| char::from(CHARS[(self.next() % CHARS.len() as u64) as usize]))
            .collect()
    }
}

/// `n` realistic pipelines spread over regions, resource groups, names and tags; the same
/// `(n, seed)` always gives the same items. IDs are unique.
pub fn generate(n: usize, seed: u64) -> Vec<Value> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let team = rng.pick(&TEAMS);
            let env = rng.pick(&ENVS);
            let base = rng.pick(&BASES);
            let name = format!("{}-{base}-{env}-{i}", team.replace(' ', "-"));
            // The index suffix keeps IDs unique whatever the random part.
            let id = format!("ip-{}{i:x}", rng.alnum(12));
            pipeline(&mut rng, &id, &name, rng_region(i), team, env, base)
        })
        .collect()
}

fn rng_region(i: usize) -> &'static str {
    REGIONS
        .get(i % REGIONS.len())
        .copied()
        .unwrap_or("cn-hangzhou")
}

fn pipeline(
    rng: &mut Rng,
    id: &str,
    name: &str,
    region: &str,
    team: &str,
    env: &str,
    base: &str,
) -> Value {
    let group = rng.pick(&GROUPS);
    let family = format!("{base}-golden");
    let day = 1 + rng.next() % 28;
    json!({
        "ImagePipelineId": id,
        "Name": name,
        "Description": format!("Golden {base} image for {team} ({env})"),
        "BaseImageType": "IMAGE_FAMILY",
        "BaseImage": format!("acs:{base}_22_04_x64"),
        "BuildContent": "RUN yum update -y\nRUN echo hardened > /etc/motd",
        "TestContent": "RUN test -f /etc/motd",
        "RepairMode": "Standard",
        "ImageName": format!("{team}-{base}", team = team.replace(' ', "-")),
        "ImageFamily": family,
        "InstanceType": rng.pick(&TYPES),
        "SystemDiskSize": 40 + 20 * (rng.next() % 3),
        "InternetMaxBandwidthOut": rng.next() % 2 * 5,
        "VSwitchId": format!("vsw-{}", rng.alnum(16)),
        "DeleteInstanceOnFailure": rng.next() % 4 != 0,
        "ResourceGroupId": group,
        "CreationTime": format!("2024-03-{day:02}T0{}:00:00Z", rng.next() % 10),
        "Tags": {"Tag": [
            {"TagKey": "team", "TagValue": team},
            {"TagKey": "env", "TagValue": env},
        ]},
        "ToRegionIds": {"ToRegionId": [region]},
        "AddAccounts": {"AddAccount": []},
        "RegionId": region,
    })
}

/// A small sample for the demo: eight pipelines of two teams over two regions.
pub fn sample_items() -> Vec<Value> {
    let mut rng = Rng(2024);
    let rows = [
        (
            "ip-bp1payments01base",
            "payments-ubuntu-base",
            "cn-hangzhou",
            "payments",
            "prod",
            "ubuntu",
        ),
        (
            "ip-bp1payments02gpu",
            "payments-alinux-gpu",
            "cn-hangzhou",
            "payments",
            "prod",
            "alinux",
        ),
        (
            "ip-bp1payments03stg",
            "payments-ubuntu-staging",
            "cn-hangzhou",
            "payments",
            "staging",
            "ubuntu",
        ),
        (
            "ip-bp1search01index",
            "search-alinux-indexer",
            "cn-hangzhou",
            "search",
            "prod",
            "alinux",
        ),
        (
            "ip-uf6payments04dr",
            "payments-ubuntu-dr",
            "cn-shanghai",
            "payments",
            "prod",
            "ubuntu",
        ),
        (
            "ip-uf6search02query",
            "search-alinux-query",
            "cn-shanghai",
            "search",
            "prod",
            "alinux",
        ),
        (
            "ip-uf6search03dev",
            "search-centos-dev",
            "cn-shanghai",
            "search",
            "dev",
            "centos",
        ),
        (
            "ip-uf6search04stg",
            "search-alinux-staging",
            "cn-shanghai",
            "search",
            "staging",
            "alinux",
        ),
    ];
    rows.iter()
        .map(|(id, name, region, team, env, base)| {
            pipeline(&mut rng, id, name, region, team, env, base)
        })
        .collect()
}

/// Reads a `--data` file: a JSON array of objects in the API's item shape plus `RegionId`.
pub fn load(path: &Path) -> Result<Vec<Value>, SimError> {
    let err = |message: String| SimError::Data {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let value: Value = serde_json::from_slice(&text).map_err(|e| err(e.to_string()))?;
    let items = match value {
        Value::Array(items) => items,
        _ => return Err(err("expected a JSON array of pipeline objects".into())),
    };
    if let Some(i) = items.iter().position(|v| !v.is_object()) {
        return Err(err(format!("item {i} is not a JSON object")));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generation_is_deterministic_with_unique_well_formed_ids() {
        let a = generate(300, 7);
        assert_eq!(a, generate(300, 7));
        assert_ne!(a, generate(300, 8));
        let ids: HashSet<&str> = a
            .iter()
            .filter_map(|i| i["ImagePipelineId"].as_str())
            .collect();
        assert_eq!(ids.len(), 300);
        assert!(ids.iter().all(|id| crate::api::is_pipeline_id(id)));
        let regions: HashSet<&str> = a.iter().filter_map(|i| i["RegionId"].as_str()).collect();
        assert!(regions.len() > 1);
        assert!(
            a.iter()
                .filter_map(|i| i["Name"].as_str())
                .all(crate::api::is_pipeline_name)
        );
    }

    #[test]
    fn the_sample_covers_two_regions_and_two_teams() {
        let s = sample_items();
        assert_eq!(s.len(), 8);
        let regions: HashSet<&str> = s.iter().filter_map(|i| i["RegionId"].as_str()).collect();
        assert_eq!(regions.len(), 2);
    }

    #[test]
    fn data_files_must_be_arrays_of_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("d.json");
        std::fs::write(&p, "[{\"ImagePipelineId\":\"ip-a\"}]").expect("write");
        assert_eq!(load(&p).expect("valid").len(), 1);
        for bad in ["{}", "[1]", "not json"] {
            std::fs::write(&p, bad).expect("write");
            assert!(load(&p).is_err(), "{bad}");
        }
        assert!(load(&dir.path().join("missing.json")).is_err());
    }
}
