//! [`ScriptStore`], written once for both backends.

use async_trait::async_trait;
use picloud_core::exec::ModuleVersion;
use picloud_core::{AppId, Script, ScriptId, ScriptName, Timestamp};

use crate::db::{Engine, OnConstraint, Sql, WriteTx};
use crate::errors::{corrupt, script_is_a_target, UniqueRule};
use crate::paging::Window;
use crate::rows::{count, one, records, ScriptRow};
use crate::{
    sql, AppModule, NewScript, Page, PageRequest, ScriptLink, ScriptPatch, ScriptStore, StoreError,
    StoreResult,
};

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
        let mut tx = self.begin_write().await?;
        let row: Option<ScriptRow> = tx
            .fetch_optional(
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
        let created: Script = row.ok_or(StoreError::NotFound("app"))?.try_into()?;
        record_imports(&mut tx, &created, &script.imports).await?;
        tx.commit().await?;
        Ok(created)
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
        let mut tx = self.begin_write().await?;
        let row: Option<ScriptRow> = tx
            .fetch_optional(
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
        let updated: Script = row.ok_or(StoreError::NotFound("script"))?.try_into()?;
        if let Some(imports) = &patch.imports {
            tx.execute(sql::CLEAR_IMPORTS, &[updated.id.to_string().into()])
                .await?;
            record_imports(&mut tx, &updated, imports).await?;
        }
        tx.commit().await?;
        Ok(updated)
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

    async fn get_module(&self, app_id: AppId, name: &str) -> StoreResult<Option<Script>> {
        let row: Option<ScriptRow> = self
            .fetch_optional(sql::GET_MODULE, &[app_id.to_string().into(), name.into()])
            .await?;
        row.map(Script::try_from).transpose()
    }

    async fn module_versions(&self, app_id: Option<AppId>) -> StoreResult<Vec<AppModule>> {
        let rows: Vec<(String, String, String, i64)> = self
            .fetch_all(
                sql::MODULE_VERSIONS,
                &[app_id.map(|id| id.to_string()).into()],
            )
            .await?;
        rows.into_iter()
            .map(|(app_id, name, id, updated_at)| {
                Ok(AppModule {
                    app_id: AppId::parse(&app_id).map_err(corrupt("scripts"))?,
                    name,
                    version: ModuleVersion {
                        id: ScriptId::parse(&id).map_err(corrupt("scripts"))?,
                        updated_at: Timestamp::from_millis(updated_at),
                    },
                })
            })
            .collect()
    }

    async fn imports_of(&self, id: ScriptId) -> StoreResult<Vec<ScriptLink>> {
        links(self, sql::IMPORTS_OF, id).await
    }

    async fn importers_of(&self, id: ScriptId) -> StoreResult<Vec<ScriptLink>> {
        links(self, sql::IMPORTERS_OF, id).await
    }

    async fn import_graph(&self, app_id: AppId) -> StoreResult<Vec<(String, String)>> {
        Ok(self
            .fetch_all(sql::IMPORT_GRAPH, &[app_id.to_string().into()])
            .await?)
    }
}

/// Records that `script` imports `imports`, in the transaction that writes it. A name that is no
/// module of the app (the save-time check found it, so another save removed it since) refuses
/// the whole write.
async fn record_imports<T: WriteTx>(
    tx: &mut T,
    script: &Script,
    imports: &[String],
) -> StoreResult<()> {
    let (id, app_id) = (script.id.to_string(), script.app_id.to_string());
    for name in imports {
        let recorded = tx
            .execute(
                sql::INSERT_IMPORT,
                &[(&id).into(), (&app_id).into(), name.as_str().into()],
            )
            .await?;
        if recorded == 0 {
            return Err(StoreError::InvalidInput(format!(
                "cannot import '{name}': this app has no module of that name"
            )));
        }
    }
    Ok(())
}

/// The scripts a link query answers for `id`.
async fn links<E: Engine>(
    engine: &E,
    query: Sql<'_>,
    id: ScriptId,
) -> StoreResult<Vec<ScriptLink>> {
    let rows: Vec<(String, String)> = engine.fetch_all(query, &[id.to_string().into()]).await?;
    rows.into_iter()
        .map(|(id, name)| {
            Ok(ScriptLink {
                id: ScriptId::parse(&id).map_err(corrupt("scripts"))?,
                name,
            })
        })
        .collect()
}
