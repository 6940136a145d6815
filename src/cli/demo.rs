//! `imagepipeline-operator demo`: the embedded default. Starts the simulator in-process with a
//! built-in sample, lists it through the real client exactly as a query would, and prints what
//! the operator would mirror. No cloud account and no cluster needed.

use std::sync::Arc;

use jiff::Timestamp;

use super::export::manifests;
use super::output::{Format, render, table};
use super::{CliError, print_out};
use crate::ecs::credentials::{Credentials, SharedProvider, StaticProvider};
use crate::ecs::{ClientConfig, EcsClient, PipelineFilter, TagFilter};
use crate::sim;

/// Flags of `demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Region of the sample query.
    #[arg(long, default_value = "cn-hangzhou")]
    pub region: String,
    /// Tag of the second sample query, `KEY=VALUE`.
    #[arg(long, default_value = "team=payments", value_parser = super::export::parse_tag)]
    pub tag: TagFilter,
    /// Format of the manifests printed at the end.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
}

/// Runs the demo and prints to stdout.
pub async fn demo(args: DemoArgs) -> Result<(), CliError> {
    let credential = sim::Credential::new("demo-access-key-id", "demo-access-key-secret");
    let handle = sim::start(sim::SimConfig {
        items: sim::sample_items(),
        credentials: vec![credential.clone()],
        ..sim::SimConfig::default()
    })
    .await?;
    let provider: SharedProvider = Arc::new(StaticProvider::new(
        "demo",
        Credentials::new(&credential.access_key_id, &credential.access_key_secret),
    ));
    let client = EcsClient::new(ClientConfig {
        endpoint: Some(handle.url()),
        ..ClientConfig::default()
    })?;
    print_out(&format!(
        "Built-in ECS simulator listening on {} with {} sample pipelines.\n\n",
        handle.url(),
        sim::sample_items().len()
    ))?;

    let mut all = PipelineFilter::region(&args.region);
    all.page_size = 3;
    let mut tagged = all.clone();
    tagged.tags = vec![args.tag.clone()];
    let now = Timestamp::now();

    for (title, filter) in [
        (format!("regionId: {}", args.region), &all),
        (
            format!(
                "regionId: {}, tags: [{}={}]",
                args.region,
                args.tag.key,
                args.tag.value.as_deref().unwrap_or("*")
            ),
            &tagged,
        ),
    ] {
        let listing = client.list_all(filter, &provider).await?;
        let objects = manifests(&listing.items, &filter.region_id, "default", now);
        print_out(&format!(
            "ImagePipelineQuery {{{title}, pageSize: {}}} -> {} pipelines, {} DescribeImagePipelines call(s)\n\
             $ kubectl get imagepipelines\n{}\n",
            filter.page_size,
            objects.len(),
            listing.calls,
            table(&objects, now)
        ))?;
    }

    let listing = client.list_all(&tagged, &provider).await?;
    let objects = manifests(&listing.items, &tagged.region_id, "default", now);
    print_out("Manifests the operator would write for the tagged query:\n")?;
    print_out(&render(&objects, args.output)?)?;
    handle.shutdown().await;
    Ok(())
}
