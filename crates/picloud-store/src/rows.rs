//! Rows as they come out of either database, and their conversion into records; the values as
//! the columns keep them.
//!
//! The row structs derive `sqlx::FromRow` generically, so one definition decodes SQLite and
//! PostgreSQL rows alike ([`crate::db::Row`]): both schemas use TEXT ids, BIGINT milliseconds and
//! booleans, and JSON (TEXT on SQLite, JSONB on PostgreSQL) is read as `CAST(… AS TEXT)`.

use picloud_core::docs::FieldPath;
use picloud_core::firing::{DocsTriggerRule, KvTriggerRule};
use picloud_core::{
    ApiKey, ApiKeyId, App, AppId, AppName, AppSlug, CollectionName, DeadLetter, DeadLetterId,
    DispatchMode, DocsOp, ExecutionId, JobPayload, KeptHeaders, KvOp, Membership, Resolution, Role,
    Route, RouteId, RouteMethod, RoutePath, Scope, Script, ScriptId, ScriptKind, ScriptName,
    Timestamp, Trigger, TriggerDetail, TriggerId, User, UserId, Username,
};

use crate::errors::corrupt;
use crate::{
    AbandonedExecution, ApiKeyCredentials, AppUsage, ClaimedJob, DeadLetterStatus, RoutingEntry,
    StoreError, StoreResult, UserCredentials,
};

/// How far a span of time (a session's lifetime, a lease, a retry delay, a retention) may reach
/// either way (100 years), so that `now + span` cannot overflow a 64-bit integer on either
/// backend.
const MAX_SPAN_MS: i64 = 100 * 365 * 24 * 60 * 60 * 1000;

/// `ms` within ±[`MAX_SPAN_MS`], for `now + span` in SQL.
pub(crate) fn span(ms: i64) -> i64 {
    ms.clamp(-MAX_SPAN_MS, MAX_SPAN_MS)
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AppRow {
    id: String,
    slug: String,
    name: String,
    expose_errors: bool,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<AppRow> for App {
    type Error = StoreError;

    fn try_from(row: AppRow) -> StoreResult<Self> {
        Ok(Self {
            id: AppId::parse(&row.id).map_err(corrupt("apps"))?,
            slug: AppSlug::parse(&row.slug).map_err(corrupt("apps"))?,
            name: AppName::parse(&row.name).map_err(corrupt("apps"))?,
            expose_errors: row.expose_errors,
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ScriptRow {
    id: String,
    app_id: String,
    name: String,
    kind: String,
    source: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ScriptRow> for Script {
    type Error = StoreError;

    fn try_from(row: ScriptRow) -> StoreResult<Self> {
        let kind = ScriptKind::parse(&row.kind).map_err(corrupt("scripts"))?;
        Ok(Self {
            id: ScriptId::parse(&row.id).map_err(corrupt("scripts"))?,
            app_id: AppId::parse(&row.app_id).map_err(corrupt("scripts"))?,
            name: ScriptName::parse(&row.name, kind).map_err(corrupt("scripts"))?,
            kind,
            source: row.source,
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RouteRow {
    id: String,
    app_id: String,
    script_id: String,
    method: String,
    path: String,
    dispatch_mode: String,
    /// Space-separated header names; see [`keep_headers_column`].
    keep_headers: String,
    created_at: i64,
}

impl TryFrom<RouteRow> for Route {
    type Error = StoreError;

    fn try_from(row: RouteRow) -> StoreResult<Self> {
        Ok(Self {
            id: RouteId::parse(&row.id).map_err(corrupt("routes"))?,
            app_id: AppId::parse(&row.app_id).map_err(corrupt("routes"))?,
            script_id: ScriptId::parse(&row.script_id).map_err(corrupt("routes"))?,
            method: RouteMethod::parse(&row.method).map_err(corrupt("routes"))?,
            path: RoutePath::parse(&row.path).map_err(corrupt("routes"))?,
            dispatch_mode: DispatchMode::parse(&row.dispatch_mode).map_err(corrupt("routes"))?,
            keep_headers: KeptHeaders::parse(
                &row.keep_headers.split_whitespace().collect::<Vec<_>>(),
            )
            .map_err(corrupt("routes"))?,
            created_at: Timestamp::from_millis(row.created_at),
        })
    }
}

/// A route joined with its app's slug and its script's current version.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RoutingRow {
    #[sqlx(flatten)]
    route: RouteRow,
    app_slug: String,
    app_expose_errors: bool,
    script_name: String,
    script_kind: String,
    script_updated_at: i64,
    script_source: String,
}

impl TryFrom<RoutingRow> for RoutingEntry {
    type Error = StoreError;

    fn try_from(row: RoutingRow) -> StoreResult<Self> {
        let kind = ScriptKind::parse(&row.script_kind).map_err(corrupt("scripts"))?;
        Ok(Self {
            route: row.route.try_into()?,
            app_slug: AppSlug::parse(&row.app_slug).map_err(corrupt("apps"))?,
            app_expose_errors: row.app_expose_errors,
            script_name: ScriptName::parse(&row.script_name, kind).map_err(corrupt("scripts"))?,
            script_updated_at: Timestamp::from_millis(row.script_updated_at),
            script_source: row.script_source,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    id: String,
    username: String,
    is_instance_admin: bool,
    disabled: bool,
    created_at: i64,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> StoreResult<Self> {
        Ok(Self {
            id: UserId::parse(&row.id).map_err(corrupt("users"))?,
            username: Username::parse(&row.username).map_err(corrupt("users"))?,
            is_instance_admin: row.is_instance_admin,
            disabled: row.disabled,
            created_at: Timestamp::from_millis(row.created_at),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CredentialsRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
}

impl TryFrom<CredentialsRow> for UserCredentials {
    type Error = StoreError;

    fn try_from(row: CredentialsRow) -> StoreResult<Self> {
        Ok(Self {
            user: row.user.try_into()?,
            password_hash: row.password_hash,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MembershipRow {
    app_id: String,
    user_id: String,
    username: String,
    role: String,
    created_at: i64,
}

impl TryFrom<MembershipRow> for Membership {
    type Error = StoreError;

    fn try_from(row: MembershipRow) -> StoreResult<Self> {
        Ok(Self {
            app_id: AppId::parse(&row.app_id).map_err(corrupt("memberships"))?,
            user_id: UserId::parse(&row.user_id).map_err(corrupt("memberships"))?,
            username: Username::parse(&row.username).map_err(corrupt("users"))?,
            role: Role::parse(&row.role).map_err(corrupt("memberships"))?,
            created_at: Timestamp::from_millis(row.created_at),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RoleRow {
    app_id: String,
    role: String,
}

impl TryFrom<RoleRow> for (AppId, Role) {
    type Error = StoreError;

    fn try_from(row: RoleRow) -> StoreResult<Self> {
        Ok((
            AppId::parse(&row.app_id).map_err(corrupt("memberships"))?,
            Role::parse(&row.role).map_err(corrupt("memberships"))?,
        ))
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    id: String,
    user_id: String,
    name: String,
    prefix: String,
    scopes: String,
    app_id: Option<String>,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    created_at: i64,
    revoked: bool,
}

/// How a route's kept headers are stored: lower-case names separated by spaces (a header name
/// holds no space), `''` for none.
pub(crate) fn keep_headers_column(kept: &KeptHeaders) -> String {
    kept.names().iter().collect::<Vec<_>>().join(" ")
}

/// Scopes as the `scopes` column keeps them: names separated by spaces.
pub(crate) fn scopes_column(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|scope| scope.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = StoreError;

    fn try_from(row: ApiKeyRow) -> StoreResult<Self> {
        Ok(Self {
            id: ApiKeyId::parse(&row.id).map_err(corrupt("api_keys"))?,
            user_id: UserId::parse(&row.user_id).map_err(corrupt("api_keys"))?,
            name: row.name,
            prefix: row.prefix,
            scopes: row
                .scopes
                .split_whitespace()
                .map(Scope::parse)
                .collect::<Result<_, _>>()
                .map_err(corrupt("api_keys"))?,
            app_id: row
                .app_id
                .as_deref()
                .map(AppId::parse)
                .transpose()
                .map_err(corrupt("api_keys"))?,
            expires_at: row.expires_at.map(Timestamp::from_millis),
            last_used_at: row.last_used_at.map(Timestamp::from_millis),
            created_at: Timestamp::from_millis(row.created_at),
            revoked: row.revoked,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ApiKeyCredentialsRow {
    #[sqlx(flatten)]
    key: ApiKeyRow,
    secret_hash: Vec<u8>,
}

impl TryFrom<ApiKeyCredentialsRow> for ApiKeyCredentials {
    type Error = StoreError;

    fn try_from(row: ApiKeyCredentialsRow) -> StoreResult<Self> {
        Ok(Self {
            key: row.key.try_into()?,
            secret_hash: row.secret_hash,
        })
    }
}

/// A JSON text the store wrote, read back.
pub(crate) fn json_value(table: &'static str, text: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(text).map_err(corrupt(table))
}

/// A job's payload as the outbox and the dead letters keep it: its JSON text.
pub(crate) fn payload_text(payload: &JobPayload) -> StoreResult<String> {
    serde_json::to_string(payload)
        .map_err(|err| StoreError::Internal(format!("a job payload cannot be serialized: {err}")))
}

/// A count of attempts or a trigger depth, which both backends keep as a 64-bit integer.
fn small(table: &'static str, value: i64) -> StoreResult<u32> {
    u32::try_from(value).map_err(corrupt(table))
}

/// KV operations as the `ops` column keeps them: names separated by commas, each once, in
/// [`KvOp`] order ("set,delete").
pub(crate) fn ops_column(ops: &[KvOp]) -> String {
    let mut ops = ops.to_vec();
    ops.sort_unstable();
    ops.dedup();
    ops.iter()
        .map(|op| op.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_ops(column: &str) -> StoreResult<Vec<KvOp>> {
    parse_ops_of(column, "kv_trigger_details", KvOp::parse)
}

/// Operations (KV or docs) as an `ops` column keeps them: names separated by commas.
fn parse_ops_of<Op>(
    column: &str,
    table: &'static str,
    parse: fn(&str) -> Result<Op, picloud_core::InputError>,
) -> StoreResult<Vec<Op>> {
    column
        .split(',')
        .filter(|op| !op.is_empty())
        .map(|op| parse(op).map_err(corrupt(table)))
        .collect()
}

/// Docs operations as the `ops` column keeps them: each once, in [`DocsOp`] order.
pub(crate) fn docs_ops_column(ops: &[DocsOp]) -> String {
    let mut ops = ops.to_vec();
    ops.sort_unstable();
    ops.dedup();
    ops.iter()
        .map(|op| op.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// A docs trigger's field paths as the `fields` column keeps them: comma-separated.
pub(crate) fn fields_column(fields: Option<&[FieldPath]>) -> Option<String> {
    fields.map(|fields| {
        fields
            .iter()
            .map(FieldPath::to_string)
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn parse_fields(column: Option<&str>) -> StoreResult<Option<Vec<FieldPath>>> {
    column
        .map(|column| {
            column
                .split(',')
                .map(|path| FieldPath::parse(path).map_err(corrupt("docs_trigger_details")))
                .collect()
        })
        .transpose()
}

/// A trigger with its KV or docs details (NULL for other kinds).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TriggerRow {
    id: String,
    app_id: String,
    script_id: String,
    kind: String,
    created_at: i64,
    collection: Option<String>,
    key_prefix: Option<String>,
    ops: Option<String>,
    fields: Option<String>,
}

impl TryFrom<TriggerRow> for Trigger {
    type Error = StoreError;

    fn try_from(row: TriggerRow) -> StoreResult<Self> {
        let detail = match (row.kind.as_str(), row.collection, row.ops) {
            ("kv", Some(collection), Some(ops)) => TriggerDetail::Kv {
                collection: CollectionName::parse(&collection)
                    .map_err(corrupt("kv_trigger_details"))?,
                key_prefix: row.key_prefix,
                ops: parse_ops(&ops)?,
            },
            ("docs", Some(collection), Some(ops)) => TriggerDetail::Docs {
                collection: CollectionName::parse(&collection)
                    .map_err(corrupt("docs_trigger_details"))?,
                ops: parse_ops_of(&ops, "docs_trigger_details", DocsOp::parse)?,
                fields: parse_fields(row.fields.as_deref())?,
            },
            ("dead_letter", _, _) => TriggerDetail::DeadLetter,
            (kind, _, _) => {
                return Err(StoreError::Internal(format!(
                    "a corrupt row in triggers: the '{kind}' trigger {} has no details",
                    row.id
                )))
            }
        };
        Ok(Self {
            id: TriggerId::parse(&row.id).map_err(corrupt("triggers"))?,
            app_id: AppId::parse(&row.app_id).map_err(corrupt("triggers"))?,
            script_id: ScriptId::parse(&row.script_id).map_err(corrupt("triggers"))?,
            detail,
            created_at: Timestamp::from_millis(row.created_at),
        })
    }
}

/// What [`crate::sql::APP_USAGE`] reads.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub(crate) struct UsageRow {
    pub kv_bytes: i64,
    pub queued_jobs: i64,
    /// The app's KV commit sequence (see [`picloud_core::tx::Version`]).
    pub kv_version: i64,
}

impl crate::commit::AnyRow for UsageRow {
    fn from_rusqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            kv_bytes: row.get("kv_bytes")?,
            queued_jobs: row.get("queued_jobs")?,
            kv_version: row.get("kv_version")?,
        })
    }
}

impl From<UsageRow> for AppUsage {
    fn from(row: UsageRow) -> Self {
        // The counts never go below zero; should a bug make them, the app is not locked out.
        Self {
            kv_bytes: u64::try_from(row.kv_bytes).unwrap_or(0),
            queued_jobs: u64::try_from(row.queued_jobs).unwrap_or(0),
        }
    }
}

/// A KV trigger of one collection, as [`crate::sql::KV_TRIGGERS`] finds it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct KvTriggerRow {
    script_id: String,
    key_prefix: Option<String>,
    ops: String,
}

impl crate::commit::AnyRow for KvTriggerRow {
    fn from_rusqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            script_id: row.get("script_id")?,
            key_prefix: row.get("key_prefix")?,
            ops: row.get("ops")?,
        })
    }
}

impl TryFrom<KvTriggerRow> for KvTriggerRule {
    type Error = StoreError;

    fn try_from(row: KvTriggerRow) -> StoreResult<Self> {
        Ok(Self {
            script_id: ScriptId::parse(&row.script_id).map_err(corrupt("triggers"))?,
            key_prefix: row.key_prefix,
            ops: parse_ops(&row.ops)?,
        })
    }
}

/// A docs trigger of one collection, as [`crate::sql::DOCS_TRIGGERS`] finds it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DocsTriggerRow {
    script_id: String,
    ops: String,
    fields: Option<String>,
}

impl crate::commit::AnyRow for DocsTriggerRow {
    fn from_rusqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            script_id: row.get("script_id")?,
            ops: row.get("ops")?,
            fields: row.get("fields")?,
        })
    }
}

impl TryFrom<DocsTriggerRow> for DocsTriggerRule {
    type Error = StoreError;

    fn try_from(row: DocsTriggerRow) -> StoreResult<Self> {
        Ok(Self {
            script_id: ScriptId::parse(&row.script_id).map_err(corrupt("triggers"))?,
            ops: parse_ops_of(&row.ops, "docs_trigger_details", DocsOp::parse)?,
            fields: parse_fields(row.fields.as_deref())?,
        })
    }
}

/// An outbox row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JobRow {
    pub id: String,
    pub app_id: String,
    pub script_id: String,
    pub mode: String,
    pub source_kind: String,
    /// The JSON text of a [`JobPayload`].
    pub payload: String,
    pub trigger_depth: i64,
    pub attempt: i64,
    /// Claims come back in this order.
    pub due_at: i64,
    pub created_at: i64,
}

impl TryFrom<JobRow> for ClaimedJob {
    type Error = StoreError;

    fn try_from(row: JobRow) -> StoreResult<Self> {
        Ok(Self {
            id: ExecutionId::parse(&row.id).map_err(corrupt("outbox"))?,
            app_id: AppId::parse(&row.app_id).map_err(corrupt("outbox"))?,
            script_id: ScriptId::parse(&row.script_id).map_err(corrupt("outbox"))?,
            payload: serde_json::from_str(&row.payload).map_err(corrupt("outbox"))?,
            trigger_depth: small("outbox", row.trigger_depth)?,
            attempt: small("outbox", row.attempt)?,
            created_at: Timestamp::from_millis(row.created_at),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DeadLetterRow {
    id: String,
    app_id: String,
    script_id: String,
    execution_id: String,
    source_kind: String,
    payload: String,
    error: String,
    attempts: i64,
    trigger_depth: i64,
    created_at: i64,
    resolved_at: Option<i64>,
    resolution: Option<String>,
}

impl TryFrom<DeadLetterRow> for DeadLetter {
    type Error = StoreError;

    fn try_from(row: DeadLetterRow) -> StoreResult<Self> {
        let resolution = match row.resolution.as_deref() {
            None => None,
            Some(text) => Some(Resolution::parse(text).ok_or_else(|| {
                StoreError::Internal(format!(
                    "a corrupt row in dead_letters: '{text}' is no resolution"
                ))
            })?),
        };
        Ok(Self {
            id: DeadLetterId::parse(&row.id).map_err(corrupt("dead_letters"))?,
            app_id: AppId::parse(&row.app_id).map_err(corrupt("dead_letters"))?,
            script_id: ScriptId::parse(&row.script_id).map_err(corrupt("dead_letters"))?,
            execution_id: ExecutionId::parse(&row.execution_id).map_err(corrupt("dead_letters"))?,
            source: row.source_kind,
            payload: serde_json::from_str(&row.payload).map_err(corrupt("dead_letters"))?,
            error: row.error,
            attempts: small("dead_letters", row.attempts)?,
            trigger_depth: small("dead_letters", row.trigger_depth)?,
            created_at: Timestamp::from_millis(row.created_at),
            resolved_at: row.resolved_at.map(Timestamp::from_millis),
            resolution,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AbandonedRow {
    execution_id: String,
    app_id: String,
    script_id: String,
    reason: String,
    created_at: i64,
}

impl TryFrom<AbandonedRow> for AbandonedExecution {
    type Error = StoreError;

    fn try_from(row: AbandonedRow) -> StoreResult<Self> {
        Ok(Self {
            execution_id: ExecutionId::parse(&row.execution_id)
                .map_err(corrupt("abandoned_executions"))?,
            app_id: AppId::parse(&row.app_id).map_err(corrupt("abandoned_executions"))?,
            script_id: ScriptId::parse(&row.script_id).map_err(corrupt("abandoned_executions"))?,
            reason: row.reason,
            created_at: Timestamp::from_millis(row.created_at),
        })
    }
}

/// What [`crate::sql::ROUTING_FINGERPRINT`] reads. Each part moves when the route index would change:
///
/// - a route added or deleted: `routes` (and `last_route`, the newest id, for a delete and an
///   add between two polls); routes are never updated;
/// - a script's name or source changed: every update moves its `updated_at` forward by at least
///   1 ms, so `script_versions` (the sum of `updated_at - created_at`) grows. Creating a script
///   changes no route, and a script that routes point at cannot be deleted;
/// - an app renamed or its `expose_errors` changed: the same rule for apps (`app_versions`); an app created or deleted: `apps`
///   and `last_app` (deleting an app deletes its routes, which `routes` sees too).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct FingerprintRow {
    apps: i64,
    last_app: String,
    app_versions: i64,
    routes: i64,
    last_route: String,
    script_versions: i64,
    scripts: i64,
    last_script: String,
}

impl FingerprintRow {
    pub fn into_string(self) -> String {
        format!(
            "apps {} {} {}; routes {} {}; scripts {} {} {}",
            self.apps,
            self.last_app,
            self.app_versions,
            self.routes,
            self.last_route,
            self.script_versions,
            self.scripts,
            self.last_script
        )
    }
}

/// The `$5` of [`crate::sql::LIST_DEAD_LETTERS`]: whether to list resolved dead letters, unresolved
/// ones, or (`None`) all.
pub(crate) fn resolved_filter(status: DeadLetterStatus) -> Option<bool> {
    match status {
        DeadLetterStatus::Unresolved => Some(false),
        DeadLetterStatus::Resolved => Some(true),
        DeadLetterStatus::All => None,
    }
}

/// Converts every row, failing on the first corrupt one.
pub(crate) fn records<R, T>(rows: Vec<R>) -> StoreResult<Vec<T>>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// A count from the database, which both backends return as a signed 64-bit integer.
pub(crate) fn count(value: i64) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Internal(format!("a negative count: {value}")))
}

/// The row of a statement that always returns one (a count, an `INSERT … RETURNING`).
pub(crate) fn one<R>(row: Option<R>) -> StoreResult<R> {
    row.ok_or_else(|| StoreError::Internal("a statement returned no row".to_owned()))
}
