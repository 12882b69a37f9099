//! [`ScriptStore`], written once for both backends.

use async_trait::async_trait;
use picloud_core::{AppId, Script, ScriptId, ScriptName};

use crate::db::{Engine, OnConstraint, WriteTx};
use crate::errors::{script_is_a_target, UniqueRule};
use crate::paging::Window;
use crate::rows::{count, one, records, ScriptRow};
use crate::{sql, NewScript, Page, PageRequest, ScriptPatch, ScriptStore, StoreError, StoreResult};

/// The sentence a user reads when the name is taken in the app.
fn name_taken(name: Option<&ScriptName>) -> impl FnOnce() -> String + '_ {
    move || match name {
        Some(name) => format!("a script named '{name}' already exists in this app"),
        None => "a script with this name already exists in this app".to_owned(),
    }
}

#[async_trait]
impl<E: Engine> ScriptStore for E {
    async fn create_script(&self, script: &NewScript) -> StoreResult<Script> {
        let row: Option<ScriptRow> = self
            .write_optional(
                sql::CREATE_SCRIPT,
                &[
                    ScriptId::new().to_string().into(),
                    script.app_id.to_string().into(),
                    script.name.as_str().into(),
                    script.kind.as_str().into(),
                    script.source.as_str().into(),
                ],
            )
            .await
            .on_constraint(UniqueRule::ScriptName, name_taken(Some(&script.name)))?;
        row.ok_or(StoreError::NotFound("app"))?.try_into()
    }

    async fn get_script(&self, id: ScriptId) -> StoreResult<Option<Script>> {
        let row: Option<ScriptRow> = self
            .fetch_optional(sql::GET_SCRIPT, &[id.to_string().into()])
            .await?;
        row.map(Script::try_from).transpose()
    }

    async fn list_scripts(&self, app_id: AppId, page: &PageRequest) -> StoreResult<Page<Script>> {
        let window = Window::new(page)?;
        let rows: Vec<ScriptRow> = self
            .fetch_all(
                sql::LIST_SCRIPTS,
                &[
                    app_id.to_string().into(),
                    (&window.after).into(),
                    window.fetch().into(),
                ],
            )
            .await?;
        Ok(window.page(records(rows)?, |script: &Script| script.id.to_string()))
    }

    async fn update_script(&self, id: ScriptId, patch: &ScriptPatch) -> StoreResult<Script> {
        let row: Option<ScriptRow> = self
            .write_optional(
                sql::UPDATE_SCRIPT,
                &[
                    id.to_string().into(),
                    patch.name.as_ref().map(|name| name.as_str()).into(),
                    patch.kind.map(|kind| kind.as_str()).into(),
                    patch.source.as_deref().into(),
                ],
            )
            .await
            .on_constraint(UniqueRule::ScriptName, name_taken(patch.name.as_ref()))?;
        row.ok_or(StoreError::NotFound("script"))?.try_into()
    }

    async fn delete_script(&self, id: ScriptId) -> StoreResult<bool> {
        let id = id.to_string();
        let mut tx = self.begin_write().await?;
        // No route or trigger may appear between the count and the delete (see the lock's SQL).
        let script: Option<(String,)> =
            tx.fetch_optional(sql::LOCK_SCRIPT, &[(&id).into()]).await?;
        if script.is_none() {
            return Ok(false);
        }
        let (routes, triggers): (i64, i64) = one(tx
            .fetch_optional(sql::COUNT_TARGETS_OF_SCRIPT, &[(&id).into()])
            .await?)?;
        if routes > 0 || triggers > 0 {
            return Err(script_is_a_target(count(routes)?, count(triggers)?));
        }
        let deleted = tx.execute(sql::DELETE_SCRIPT, &[(&id).into()]).await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }
}
