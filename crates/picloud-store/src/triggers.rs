//! [`TriggerStore`], written once for both backends. Which triggers fire for a change is
//! `picloud_core::firing`'s rule; the stores apply it in a run's commit (`crate::commit`) and
//! in [`crate::dead_letters`].

use async_trait::async_trait;
use picloud_core::{AppId, Trigger, TriggerDetail, TriggerId};

use crate::db::{Engine, WriteTx};
use crate::paging::Window;
use crate::rows::{docs_ops_column, fields_column, one, ops_column, records, TriggerRow};
use crate::{sql, NewTrigger, Page, PageRequest, StoreError, StoreResult, TriggerStore};

#[async_trait]
impl<E: Engine> TriggerStore for E {
    async fn create_trigger(&self, trigger: &NewTrigger) -> StoreResult<Trigger> {
        let id = TriggerId::new().to_string();
        let mut tx = self.begin_write().await?;
        let inserted = tx
            .execute(
                sql::CREATE_TRIGGER,
                &[
                    (&id).into(),
                    trigger.app_id.to_string().into(),
                    trigger.script_id.to_string().into(),
                    trigger.detail.kind().into(),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::NotFound("script"));
        }
        match &trigger.detail {
            TriggerDetail::Kv {
                collection,
                key_prefix,
                ops,
            } => {
                let details = [
                    (&id).into(),
                    collection.as_str().into(),
                    key_prefix.as_deref().into(),
                    ops_column(ops).into(),
                ];
                tx.execute(sql::INSERT_KV_TRIGGER_DETAILS, &details).await?
            }
            TriggerDetail::Docs {
                collection,
                ops,
                fields,
            } => {
                let details = [
                    (&id).into(),
                    collection.as_str().into(),
                    docs_ops_column(ops).into(),
                    fields_column(fields.as_deref()).into(),
                ];
                tx.execute(sql::INSERT_DOCS_TRIGGER_DETAILS, &details)
                    .await?
            }
            TriggerDetail::DeadLetter => {
                tx.execute(sql::INSERT_DEAD_LETTER_TRIGGER_DETAILS, &[(&id).into()])
                    .await?
            }
        };
        let row: Option<TriggerRow> = tx.fetch_optional(sql::GET_TRIGGER, &[(&id).into()]).await?;
        tx.commit().await?;
        one(row)?.try_into()
    }

    async fn get_trigger(&self, id: TriggerId) -> StoreResult<Option<Trigger>> {
        let row: Option<TriggerRow> = self
            .fetch_optional(sql::GET_TRIGGER, &[id.to_string().into()])
            .await?;
        row.map(Trigger::try_from).transpose()
    }

    async fn list_triggers(&self, app_id: AppId, page: &PageRequest) -> StoreResult<Page<Trigger>> {
        let window = Window::new(page)?;
        let rows: Vec<TriggerRow> = self
            .fetch_all(
                sql::LIST_TRIGGERS,
                &[
                    app_id.to_string().into(),
                    (&window.after).into(),
                    window.fetch().into(),
                ],
            )
            .await?;
        Ok(window.page(records(rows)?, |trigger: &Trigger| trigger.id.to_string()))
    }

    async fn delete_trigger(&self, id: TriggerId) -> StoreResult<bool> {
        let deleted = self
            .write(sql::DELETE_TRIGGER, &[id.to_string().into()])
            .await?;
        Ok(deleted > 0)
    }
}
