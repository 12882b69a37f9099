//! Triggers: create, list, delete. The rules:
//! - the target script must exist, be in the trigger's app and be an endpoint (a module has no
//!   top-level code to run — the changelog's v1.1.3 tightening, applied from the start);
//! - a KV trigger names a collection, an optional key prefix and at least one operation;
//! - a docs trigger names a collection, at least one operation and, optionally, the field paths
//!   one of which a change must touch (at most [`MAX_TRIGGER_FIELDS`]);
//! - managing triggers needs `AppManageTriggers`; listing them, `AppRead`.

use std::sync::Arc;

use picloud_core::docs::FieldPath;
use picloud_core::events::parse_key_prefix;
use picloud_core::{
    AppId, Capability, CollectionName, DocsOp, InputError, KvOp, Principal, ScriptId, ScriptKind,
    Trigger, TriggerDetail, TriggerId,
};
use picloud_store::{NewTrigger, Page, PageRequest, Store, StoreError};

use crate::auth::{require, require_on};
use crate::error::{ServiceError, ServiceResult};
use crate::page::check_page;

/// A new KV trigger, as received.
#[derive(Debug, Clone)]
pub struct NewKvTriggerInput {
    pub script_id: ScriptId,
    pub collection: String,
    pub key_prefix: Option<String>,
    pub ops: Vec<String>,
}

/// A new docs trigger, as received.
#[derive(Debug, Clone)]
pub struct NewDocsTriggerInput {
    pub script_id: ScriptId,
    pub collection: String,
    pub ops: Vec<String>,
    /// Only changes that touch one of these field paths; `None`: every change.
    pub fields: Option<Vec<String>>,
}

/// The most field paths a docs trigger names.
pub const MAX_TRIGGER_FIELDS: usize = 32;

/// The operations of a trigger, each once, or the sentence saying what to name.
fn parse_ops<Op: Ord>(
    ops: &[String],
    parse: fn(&str) -> Result<Op, InputError>,
    which: &str,
) -> Result<Vec<Op>, InputError> {
    if ops.is_empty() {
        return Err(InputError::new(
            "ops",
            format!("name at least one operation: {which}"),
        ));
    }
    let mut ops = ops
        .iter()
        .map(|op| parse(op))
        .collect::<Result<Vec<_>, _>>()?;
    ops.sort();
    ops.dedup();
    Ok(ops)
}

fn parse_fields(fields: &[String]) -> Result<Vec<FieldPath>, InputError> {
    if fields.is_empty() || fields.len() > MAX_TRIGGER_FIELDS {
        return Err(InputError::new(
            "fields",
            format!(
                "name 1 to {MAX_TRIGGER_FIELDS} field paths (got {}), or leave fields out to fire \
                 on every change",
                fields.len()
            ),
        ));
    }
    fields
        .iter()
        .map(|field| FieldPath::parse(field).map_err(|err| InputError::new("fields", err.message)))
        .collect()
}

#[derive(Clone)]
pub struct TriggerService {
    store: Arc<dyn Store>,
}

impl TriggerService {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    #[tracing::instrument(skip_all, fields(app_id = %app_id))]
    pub async fn create_kv(
        &self,
        actor: &Principal,
        app_id: AppId,
        input: NewKvTriggerInput,
    ) -> ServiceResult<Trigger> {
        require(actor, Capability::AppManageTriggers(app_id))?;
        let collection = CollectionName::parse(&input.collection)?;
        let key_prefix = input
            .key_prefix
            .as_deref()
            .filter(|prefix| !prefix.is_empty())
            .map(parse_key_prefix)
            .transpose()?;
        let ops = parse_ops(&input.ops, KvOp::parse, "'set', 'delete' or both")?;
        let detail = TriggerDetail::Kv {
            collection,
            key_prefix,
            ops,
        };
        self.create(app_id, input.script_id, detail).await
    }

    #[tracing::instrument(skip_all, fields(app_id = %app_id))]
    pub async fn create_docs(
        &self,
        actor: &Principal,
        app_id: AppId,
        input: NewDocsTriggerInput,
    ) -> ServiceResult<Trigger> {
        require(actor, Capability::AppManageTriggers(app_id))?;
        let collection = CollectionName::parse(&input.collection)?;
        let ops = parse_ops(&input.ops, DocsOp::parse, "'create', 'update', 'delete'")?;
        let fields = input.fields.as_deref().map(parse_fields).transpose()?;
        let detail = TriggerDetail::Docs {
            collection,
            ops,
            fields,
        };
        self.create(app_id, input.script_id, detail).await
    }

    #[tracing::instrument(skip_all, fields(app_id = %app_id))]
    pub async fn create_dead_letter(
        &self,
        actor: &Principal,
        app_id: AppId,
        script_id: ScriptId,
    ) -> ServiceResult<Trigger> {
        require(actor, Capability::AppManageTriggers(app_id))?;
        self.create(app_id, script_id, TriggerDetail::DeadLetter)
            .await
    }

    async fn create(
        &self,
        app_id: AppId,
        script_id: ScriptId,
        detail: TriggerDetail,
    ) -> ServiceResult<Trigger> {
        if self.store.get_app(app_id).await?.is_none() {
            return Err(ServiceError::not_found("app", app_id));
        }
        let no_such_script = || {
            ServiceError::from(InputError::new(
                "script_id",
                format!("no script with the id '{script_id}' in this app"),
            ))
        };
        let script = self
            .store
            .get_script(script_id)
            .await?
            .filter(|script| script.app_id == app_id)
            .ok_or_else(no_such_script)?;
        if script.kind == ScriptKind::Module {
            return Err(InputError::new(
                "script_id",
                format!(
                    "'{}' is a module script; a trigger needs an endpoint script",
                    script.name
                ),
            )
            .into());
        }
        let trigger = self
            .store
            .create_trigger(&NewTrigger {
                app_id,
                script_id,
                detail,
            })
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => no_such_script(),
                other => other.into(),
            })?;
        tracing::info!(trigger_id = %trigger.id, kind = trigger.detail.kind(), "trigger created");
        Ok(trigger)
    }

    /// The triggers of an app, oldest first.
    pub async fn list(
        &self,
        actor: &Principal,
        app_id: AppId,
        page: &PageRequest,
    ) -> ServiceResult<Page<Trigger>> {
        require(actor, Capability::AppRead(app_id))?;
        check_page(page)?;
        if self.store.get_app(app_id).await?.is_none() {
            return Err(ServiceError::not_found("app", app_id));
        }
        Ok(self.store.list_triggers(app_id, page).await?)
    }

    #[tracing::instrument(skip_all, fields(trigger_id = %id))]
    pub async fn delete(&self, actor: &Principal, id: TriggerId) -> ServiceResult<()> {
        let trigger = self
            .store
            .get_trigger(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("trigger", id))?;
        require_on(
            actor,
            Capability::AppManageTriggers(trigger.app_id),
            "trigger",
            id,
        )?;
        if !self.store.delete_trigger(id).await? {
            return Err(ServiceError::not_found("trigger", id));
        }
        tracing::info!(app_id = %trigger.app_id, "trigger deleted");
        Ok(())
    }
}
