//! `imagepipeline-operator export`: one listing without a cluster, printed as the
//! ImagePipeline manifests the controller would write.

use std::io::{BufWriter, Write};
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use jiff::Timestamp;

use super::CliError;
use super::ids::SeenIds;
use super::manifest::Mirroring;
use super::output::{Format, ManifestWriter, RenderError};
use crate::crd::ImagePipeline;
use crate::crd::pipeline::{is_object_name, mirror_object};
use crate::ecs::ambient::AmbientOverrides;
use crate::ecs::credentials::SharedProvider;
use crate::ecs::{
    ClientConfig, EcsClient, ImagePipelineItem, ItemSink, ItemView, PageEvent, PipelineFilter,
    TagFilter,
};

/// Bytes of output gathered before each write to stdout: about a hundred objects.
const OUTPUT_BUFFER: usize = 128 * 1024;

/// Flags of `export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Region to list, e.g. cn-hangzhou (API `RegionId`).
    #[arg(long = "region", env = "ALIBABA_CLOUD_REGION_ID")]
    pub region: String,
    /// Only pipelines of this resource group (API `ResourceGroupId`).
    #[arg(long)]
    pub resource_group_id: Option<String>,
    /// Only the pipeline with this name (API `Name`).
    #[arg(long)]
    pub name: Option<String>,
    /// Only these pipeline IDs (API `ImagePipelineId.N`); repeat up to 20 times.
    #[arg(long = "id", value_name = "ip-...")]
    pub ids: Vec<String>,
    /// Only pipelines with this tag (API `Tag.N`): `KEY=VALUE`, or `KEY` for any value; repeat
    /// up to 20 times, all must match.
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<TagFilter>,
    /// Pipelines per call (API `MaxResults`, 1..500).
    #[arg(long, default_value_t = crate::ecs::filter::MAX_PAGE_SIZE)]
    pub page_size: u32,
    /// Most ECS calls per second (retries included), to share an AccessKey's rate with a
    /// running operator (`run --ecs-rate-limit`, 10 by default). The default, 0, is no pacing
    /// of the export's own: one call at a time, each page asked for as soon as the one before
    /// it is read, as the official SDKs and CLI page; throttling answers are retried with
    /// backoff either way.
    #[arg(long, env = "ECS_RATE_LIMIT", default_value_t = 0)]
    pub rate_limit: u32,
    /// ECS endpoint base URL; default `https://ecs.<region>.aliyuncs.com`.
    #[arg(long, env = "ALIBABA_CLOUD_ECS_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Namespace written into the manifests.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
    /// STS endpoint for RRSA credentials; default `https://sts.aliyuncs.com` (or the regional
    /// endpoint from `ALIBABA_CLOUD_STS_REGION`).
    #[arg(long, env = "ALIBABA_CLOUD_STS_ENDPOINT")]
    pub sts_endpoint: Option<String>,
    /// ECS instance metadata endpoint for RAM-role credentials; default `http://100.100.100.200`.
    #[arg(long, env = "ALIBABA_CLOUD_IMDS_ENDPOINT")]
    pub imds_endpoint: Option<String>,
}

/// Parses `KEY=VALUE` (or `KEY`) into a tag condition; the value may itself contain `=`.
pub fn parse_tag(raw: &str) -> Result<TagFilter, String> {
    let (key, value) = match raw.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (raw, None),
    };
    if key.is_empty() {
        return Err(format!("tag {raw:?} has an empty key; use KEY=VALUE"));
    }
    Ok(TagFilter {
        key: key.to_string(),
        value,
    })
}

impl ExportArgs {
    /// The API filter these flags describe, validated.
    pub fn filter(&self) -> Result<PipelineFilter, CliError> {
        let filter = PipelineFilter {
            region_id: self.region.clone(),
            resource_group_id: self.resource_group_id.clone(),
            name: self.name.clone(),
            image_pipeline_ids: self.ids.clone(),
            tags: self.tags.clone(),
            page_size: self.page_size,
        };
        filter.validate().map_err(CliError::Filter)?;
        Ok(filter)
    }
}

/// The manifests of `items`, skipping (with a warning on stderr) IDs that cannot be object
/// names.
pub fn manifests(
    items: &[ImagePipelineItem],
    region_id: &str,
    namespace: &str,
    now: Timestamp,
) -> Vec<ImagePipeline> {
    let stamp = sync_stamp(now);
    items
        .iter()
        .filter_map(|item| {
            let obj = mirror_object(item, region_id, namespace, &stamp);
            if obj.is_none() {
                eprintln!(
                    "warning: skipping pipeline {:?}: its ID is not a valid Kubernetes object name",
                    item.image_pipeline_id
                );
            }
            obj
        })
        .collect()
}

/// `spec.lastSyncTime` of manifests printed at `now`.
fn sync_stamp(now: Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Runs `export` with `provider` (the ambient chain in production). Streams: each page's
/// manifests are printed as soon as the page is decoded, so memory stays flat in the number of
/// pipelines. A listing that fails exits with an error and prints nothing more: nothing at all
/// when the first page failed, else the objects so far (a JSON list left unclosed, so no
/// reader takes it for complete; YAML documents are each complete, so only the exit status
/// tells). When the service restarts the listing (`Invalid.NextToken`), what was printed stays
/// and only IDs not printed yet follow: a pipeline deleted meanwhile may be in the output.
/// Items without a usable `ImagePipelineId` are counted in a warning.
pub async fn export(args: ExportArgs, provider: SharedProvider) -> Result<(), CliError> {
    let filter = args.filter()?;
    let client = EcsClient::new(ClientConfig {
        endpoint: args.endpoint.clone(),
        rate_limit_qps: args.rate_limit,
        rate_limit_burst: crate::ecs::ratelimit::burst_for(args.rate_limit),
        ..ClientConfig::default()
    })?;
    eprintln!(
        "listing image pipelines in {} from {} (credentials: {})",
        filter.region_id,
        client.endpoint_for(&filter.region_id),
        provider.name()
    );
    let printing = Arc::new(Mutex::new(Printing::new(
        &filter.region_id,
        &args.namespace,
        args.output,
    )));
    let mut stdout = BufWriter::with_capacity(OUTPUT_BUFFER, std::io::stdout());
    let (mut pages, mut restarts, mut unreadable) = (0u32, 0u32, 0usize);
    let stream = client.pages_into(
        filter.clone(),
        provider,
        Box::new(PrintingSink(printing.clone())),
    );
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        let page = match event {
            Ok(PageEvent::Page(page)) => page,
            Ok(PageEvent::Restarted) => {
                restarts += 1;
                eprintln!("the listing restarted from the first page (Invalid.NextToken)");
                continue;
            }
            // What was printed stays as it is: a JSON list left open, so that nothing reads
            // it as complete; nothing at all when the first page failed. The text of the page
            // that failed is never printed.
            Err(e) => return Err(e.into()),
        };
        pages += 1;
        unreadable += page.skipped_items;
        let mut state = lock(&printing);
        if pages == 1 {
            if let Some(total) = page.total_count {
                state.ids.expect(total);
            }
        }
        state.print_page(&mut stdout).map_err(CliError::Io)?;
    }
    let mut printing = lock(&printing);
    let written = printing.writer.written();
    let listed = printing.ids.kept();
    stdout
        .write_all(&printing.finish()?)
        .map_err(CliError::Io)?;
    stdout.flush().map_err(CliError::Io)?;
    if unreadable > 0 {
        eprintln!("warning: skipped {unreadable} listed item(s) without a usable ImagePipelineId");
    }
    eprintln!(
        "listed {listed} pipelines in {pages} page(s){}, printed {written}",
        if restarts > 0 {
            format!(", {restarts} restart(s)")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// What the listed items have become so far: the manifests of the page being read, and every
/// ID printed (a listing the service restarts sends the first pages again).
struct Printing {
    region_id: String,
    namespace: String,
    stamp: String,
    /// Writes into the text of the page being read; the text goes to stdout once the page's
    /// event comes.
    writer: ManifestWriter<Vec<u8>>,
    /// The IDs printed: those of the pages printed (kept) and of the page being read
    /// (pending).
    ids: SeenIds,
    /// Objects written before the page being read.
    written_before_page: usize,
    /// The last item printed while its ID is staged (not yet known to be new): where its text
    /// starts and how many objects were written before it.
    unsettled: Option<(usize, usize)>,
}

impl Printing {
    fn new(region_id: &str, namespace: &str, format: Format) -> Self {
        Self {
            region_id: region_id.to_string(),
            namespace: namespace.to_string(),
            stamp: sync_stamp(Timestamp::now()),
            writer: ManifestWriter::new(Vec::new(), format),
            ids: SeenIds::default(),
            written_before_page: 0,
            unsettled: None,
        }
    }

    /// Prints `item` unless its ID was printed before. The ID is checked after the item is
    /// printed, at the next item or the page's end ([`Printing::settle`]), the item taken back
    /// if it was: the look into the table of IDs, asked for before printing, is then in the
    /// cache instead of a wait on memory for every item.
    fn item(&mut self, item: &ItemView<'_>) {
        self.settle();
        let id = &*item.image_pipeline_id;
        if !is_object_name(id) {
            if self.ids.insert(id) {
                eprintln!(
                    "warning: skipping pipeline {id:?}: its ID is not a valid Kubernetes object \
                     name"
                );
            }
            return;
        }
        self.ids.stage(id);
        let mirroring = Mirroring {
            region_id: &self.region_id,
            namespace: &self.namespace,
            last_sync_time: &self.stamp,
        };
        self.unsettled = Some((self.writer.get_mut().len(), self.writer.written()));
        self.writer.append_item(item, &mirroring);
    }

    /// Places the ID of the item printed last; takes the item back if the ID was seen before.
    fn settle(&mut self) {
        let Some((text_len, written)) = self.unsettled.take() else {
            return;
        };
        if self.ids.place_staged() == Some(false) {
            self.writer.get_mut().truncate(text_len);
            self.writer.rewind_to(written);
        }
    }

    /// Forgets the page being read: its items come again.
    fn drop_page(&mut self) {
        self.unsettled = None;
        self.writer.get_mut().clear();
        self.writer.rewind_to(self.written_before_page);
        self.ids.forget_pending();
    }

    /// The page being read is whole: its text goes to `out`.
    fn print_page(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        self.settle();
        let text = self.writer.get_mut();
        out.write_all(text)?;
        text.clear();
        self.ids.keep_pending();
        self.written_before_page = self.writer.written();
        Ok(())
    }

    /// The text that ends the output (the close of a JSON list); the writer starts afresh.
    fn finish(&mut self) -> Result<Vec<u8>, RenderError> {
        let fresh = ManifestWriter::new(Vec::new(), self.writer.format());
        std::mem::replace(&mut self.writer, fresh).finish()
    }
}

/// Hands the client's items to the shared [`Printing`].
struct PrintingSink(Arc<Mutex<Printing>>);

impl ItemSink for PrintingSink {
    fn item(&mut self, item: &ItemView<'_>) {
        lock(&self.0).item(item);
    }
    fn drop_page(&mut self) {
        lock(&self.0).drop_page();
    }
}

/// The printing state, also after a panic elsewhere (it holds no invariant a panic breaks).
fn lock(printing: &Mutex<Printing>) -> std::sync::MutexGuard<'_, Printing> {
    printing.lock().unwrap_or_else(|e| e.into_inner())
}

/// The credentials `export` uses: the ambient chain (environment, RRSA, ECS RAM role), in the
/// official SDKs' order.
pub fn ambient_provider(args: &ExportArgs) -> Result<SharedProvider, CliError> {
    crate::ecs::ambient::ambient_provider(&AmbientOverrides {
        sts_endpoint: args.sts_endpoint.clone(),
        imds_endpoint: args.imds_endpoint.clone(),
    })
    .map_err(|e| CliError::Credentials(e.to_string()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Export {
        #[command(flatten)]
        args: ExportArgs,
    }

    fn parse(flags: &[&str]) -> Result<ExportArgs, clap::Error> {
        let argv = ["export", "--region", "cn-hangzhou"].iter().chain(flags);
        Export::try_parse_from(argv).map(|e| e.args)
    }

    #[test]
    fn the_export_paces_itself_only_when_told() {
        // The environment would change the default; this test sets none.
        assert_eq!(parse(&[]).expect("defaults").rate_limit, 0, "no pacing");
        assert_eq!(parse(&["--rate-limit", "10"]).expect("10").rate_limit, 10);
        assert_eq!(parse(&["--rate-limit", "0"]).expect("0").rate_limit, 0);
        assert_eq!(parse(&["--rate-limit", "50"]).expect("50").rate_limit, 50);
        assert!(parse(&["--rate-limit", "-1"]).is_err());
        assert!(parse(&["--rate-limit", "fast"]).is_err());
    }

    fn item(id: &str) -> ImagePipelineItem {
        ImagePipelineItem {
            image_pipeline_id: id.to_string(),
            ..ImagePipelineItem::default()
        }
    }

    #[test]
    fn a_dropped_page_leaves_nothing_and_each_id_prints_once() {
        for format in [Format::Json, Format::Yaml] {
            let mut printing = Printing::new("cn-hangzhou", "default", format);
            let mut out = Vec::new();
            printing.item(&item("ip-a").view());
            printing.print_page(&mut out).unwrap();
            // A page read halfway, dropped, then given whole: its items once, after ip-a.
            printing.item(&item("ip-b").view());
            printing.drop_page();
            for id in ["ip-b", "ip-a", "ip-c", "ip-b"] {
                printing.item(&item(id).view());
            }
            printing.print_page(&mut out).unwrap();
            out.extend(printing.finish().unwrap());

            let stamp = printing.stamp.clone();
            let expected: Vec<ImagePipeline> = ["ip-a", "ip-b", "ip-c"]
                .iter()
                .map(|id| mirror_object(&item(id), "cn-hangzhou", "default", &stamp).unwrap())
                .collect();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                super::super::output::render(&expected, format).unwrap(),
                "{format:?}"
            );
            assert_eq!(printing.ids.kept(), 3);
        }
    }

    #[test]
    fn tags_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_tag("team=a=b").unwrap(),
            TagFilter {
                key: "team".into(),
                value: Some("a=b".into())
            }
        );
        assert_eq!(
            parse_tag("env").unwrap(),
            TagFilter {
                key: "env".into(),
                value: None
            }
        );
        assert_eq!(parse_tag("k=").unwrap().value.as_deref(), Some(""));
        assert!(parse_tag("=v").is_err());
    }
}
