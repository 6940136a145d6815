//! Items read without copying their texts: an [`ItemView`] borrows each text from the body it
//! was read from (a text with escapes is unescaped into its own string). A caller that only
//! looks at each item once, such as a printer, takes the items of a page through an
//! [`ItemSink`] ([`crate::EcsClient::pages_into`]) and saves copying every text twice.

use std::borrow::Cow;

use crate::model::{ImagePipelineItem, PipelineTag};

/// A tag of an [`ItemView`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagView<'a> {
    /// `TagKey`.
    pub key: Cow<'a, str>,
    /// `TagValue` (empty when the service sends none).
    pub value: Cow<'a, str>,
}

/// One `ImagePipelineSet` item, its texts borrowed: the fields of [`ImagePipelineItem`], read
/// by the same rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)] // Each field is the ImagePipelineItem field of the same name.
pub struct ItemView<'a> {
    pub image_pipeline_id: Cow<'a, str>,
    pub name: Option<Cow<'a, str>>,
    pub description: Option<Cow<'a, str>>,
    pub base_image: Option<Cow<'a, str>>,
    pub base_image_type: Option<Cow<'a, str>>,
    pub build_content: Option<Cow<'a, str>>,
    pub test_content: Option<Cow<'a, str>>,
    pub repair_mode: Option<Cow<'a, str>>,
    pub image_name: Option<Cow<'a, str>>,
    pub image_family: Option<Cow<'a, str>>,
    pub instance_type: Option<Cow<'a, str>>,
    pub system_disk_size: Option<i64>,
    pub internet_max_bandwidth_out: Option<i64>,
    pub v_switch_id: Option<Cow<'a, str>>,
    pub delete_instance_on_failure: Option<bool>,
    pub resource_group_id: Option<Cow<'a, str>>,
    pub creation_time: Option<Cow<'a, str>>,
    pub tags: Vec<TagView<'a>>,
    pub to_region_ids: Vec<Cow<'a, str>>,
    pub add_accounts: Vec<Cow<'a, str>>,
}

impl<'a> ItemView<'a> {
    /// Moves the strings this view owns (the texts that had escapes) into `spare`, while it
    /// holds fewer than `most`, leaving empty texts in their place: the reader of a page
    /// unescapes the next items' texts into them instead of allocating one string per text.
    pub(crate) fn release_owned(&mut self, spare: &mut Vec<String>, most: usize) {
        let mut release = |text: &mut Cow<'a, str>| {
            if spare.len() < most {
                if let Cow::Owned(owned) = std::mem::take(text) {
                    spare.push(owned);
                }
            }
        };
        release(&mut self.image_pipeline_id);
        for text in [
            &mut self.name,
            &mut self.description,
            &mut self.base_image,
            &mut self.base_image_type,
            &mut self.build_content,
            &mut self.test_content,
            &mut self.repair_mode,
            &mut self.image_name,
            &mut self.image_family,
            &mut self.instance_type,
            &mut self.v_switch_id,
            &mut self.resource_group_id,
            &mut self.creation_time,
        ]
        .into_iter()
        .flatten()
        {
            release(text);
        }
        for tag in &mut self.tags {
            release(&mut tag.key);
            release(&mut tag.value);
        }
        for text in self.to_region_ids.iter_mut().chain(&mut self.add_accounts) {
            release(text);
        }
    }
}

/// Receives each item of a page as it is read ([`crate::EcsClient::pages_into`]), in listing
/// order, before the page's event. Reading a page may stop after some of its items were given
/// (an item in an unusual shape further on): [`ItemSink::drop_page`] then says to forget the
/// items given since the last page's event, and the page's items all come again. A page whose
/// event never comes (the listing failed at it) may also have been given: keep what was made of
/// a page until its event, and drop it if an error comes instead.
pub trait ItemSink: Send {
    /// One item of the page being read.
    fn item(&mut self, item: &ItemView<'_>);
    /// Forget the items given since the last page's event: they come again.
    fn drop_page(&mut self);
}

fn borrowed(text: &Option<String>) -> Option<Cow<'_, str>> {
    text.as_deref().map(Cow::Borrowed)
}

fn owned(text: Option<Cow<'_, str>>) -> Option<String> {
    text.map(Cow::into_owned)
}

impl ImagePipelineItem {
    /// The item as a view of its own texts.
    pub fn view(&self) -> ItemView<'_> {
        ItemView {
            image_pipeline_id: Cow::Borrowed(&self.image_pipeline_id),
            name: borrowed(&self.name),
            description: borrowed(&self.description),
            base_image: borrowed(&self.base_image),
            base_image_type: borrowed(&self.base_image_type),
            build_content: borrowed(&self.build_content),
            test_content: borrowed(&self.test_content),
            repair_mode: borrowed(&self.repair_mode),
            image_name: borrowed(&self.image_name),
            image_family: borrowed(&self.image_family),
            instance_type: borrowed(&self.instance_type),
            system_disk_size: self.system_disk_size,
            internet_max_bandwidth_out: self.internet_max_bandwidth_out,
            v_switch_id: borrowed(&self.v_switch_id),
            delete_instance_on_failure: self.delete_instance_on_failure,
            resource_group_id: borrowed(&self.resource_group_id),
            creation_time: borrowed(&self.creation_time),
            tags: self
                .tags
                .iter()
                .map(|t| TagView {
                    key: Cow::Borrowed(&t.key),
                    value: Cow::Borrowed(&t.value),
                })
                .collect(),
            to_region_ids: self
                .to_region_ids
                .iter()
                .map(|s| Cow::Borrowed(&**s))
                .collect(),
            add_accounts: self
                .add_accounts
                .iter()
                .map(|s| Cow::Borrowed(&**s))
                .collect(),
        }
    }
}

impl ItemView<'_> {
    /// The item with its own copies of the texts.
    pub fn into_item(self) -> ImagePipelineItem {
        ImagePipelineItem {
            image_pipeline_id: self.image_pipeline_id.into_owned(),
            name: owned(self.name),
            description: owned(self.description),
            base_image: owned(self.base_image),
            base_image_type: owned(self.base_image_type),
            build_content: owned(self.build_content),
            test_content: owned(self.test_content),
            repair_mode: owned(self.repair_mode),
            image_name: owned(self.image_name),
            image_family: owned(self.image_family),
            instance_type: owned(self.instance_type),
            system_disk_size: self.system_disk_size,
            internet_max_bandwidth_out: self.internet_max_bandwidth_out,
            v_switch_id: owned(self.v_switch_id),
            delete_instance_on_failure: self.delete_instance_on_failure,
            resource_group_id: owned(self.resource_group_id),
            creation_time: owned(self.creation_time),
            tags: self
                .tags
                .into_iter()
                .map(|t| PipelineTag {
                    key: t.key.into_owned(),
                    value: t.value.into_owned(),
                })
                .collect(),
            to_region_ids: self
                .to_region_ids
                .into_iter()
                .map(Cow::into_owned)
                .collect(),
            add_accounts: self.add_accounts.into_iter().map(Cow::into_owned).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_and_its_view_convert_both_ways() {
        let item = ImagePipelineItem {
            image_pipeline_id: "ip-a".into(),
            name: Some("n".into()),
            system_disk_size: Some(40),
            tags: vec![PipelineTag {
                key: "k".into(),
                value: String::new(),
            }],
            add_accounts: vec!["1".into()],
            ..ImagePipelineItem::default()
        };
        assert_eq!(item.view().into_item(), item);
    }
}
