//! [`DocStore`]: the document store's reads and declared indexes, written once for both
//! backends; a document's writes are a run's commit (`crate::commit`), as KV's are.
//!
//! A filter (`picloud_core::docs::Query`) becomes SQL here. Each field path is compared through
//! one *key expression* whose database order is the documented order of values:
//!
//! - **SQLite**: `CASE json_type(data, path) …`: missing and null are NULL, numbers REAL, strings
//!   TEXT, false / true / arrays / maps the BLOBs `x'01'` … `x'04'` — SQLite orders NULL, then
//!   numbers, TEXT (bytewise), BLOBs, which is the documented order.
//! - **PostgreSQL**: `picloud_doc_key(data #> path)` (migration 0013), bytes that compare
//!   bytewise whatever the database's collation: a type byte, then the value made to sort.
//!
//! A comparison binds its value encoded the same way, and a range stays within its value's type
//! with the bounds of that type's keys ([`bounds`]), so that every condition is a range of one
//! expression — what an index on it serves. An equality on PostgreSQL also asks `data @> …`,
//! which the changelog's GIN `jsonb_path_ops` index serves. A declared index
//! ([`DocStore::declare_doc_index`]) is a btree on `(app_id, collection, key, id)`, one per path
//! for every app, which `$sort` uses too.

use async_trait::async_trait;
use picloud_core::docs::{Band, FieldPath, Query, Scalar, StoredDoc, Test};
use picloud_core::services::{Found, KvListRequest};
use picloud_core::tx::{RangeRead, Version};
use picloud_core::{AppId, CollectionName, DocumentId, Timestamp};
use sha2::{Digest, Sha256};

use crate::commit::CommitTx;
use crate::db::{Arg, Engine, Sql};
use crate::errors::corrupt;
use crate::paging::Window;
use crate::rows::json_value;
use crate::{sql, Backend, DocIndex, DocStore, Page, StoreError, StoreResult};

/// A document row: id, data (JSON text), created and updated at, version.
type DocRow = (String, String, i64, i64, i64);

fn stored(data: &str, created_at: i64, updated_at: i64) -> StoreResult<StoredDoc> {
    Ok(StoredDoc {
        data: json_value("docs", data)?,
        created_at: Timestamp::from_millis(created_at),
        updated_at: Timestamp::from_millis(updated_at),
    })
}

fn doc_id(id: &str) -> StoreResult<DocumentId> {
    DocumentId::parse(id).map_err(corrupt("docs"))
}

/// Binds `$1` app, `$2` collection, `$3` id.
pub(crate) fn doc_args(app_id: AppId, collection: &CollectionName, id: DocumentId) -> [Arg<'_>; 3] {
    [
        app_id.to_string().into(),
        collection.as_str().into(),
        id.to_string().into(),
    ]
}

#[async_trait]
impl<E: Engine> DocStore for E {
    async fn doc_read(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        id: DocumentId,
    ) -> StoreResult<Option<(StoredDoc, Version)>> {
        let row: Option<(String, i64, i64, i64)> = self
            .read_rows(sql::GET_DOC, &doc_args(app_id, collection, id))
            .await?
            .pop();
        row.map(|(data, created_at, updated_at, version)| {
            Ok((stored(&data, created_at, updated_at)?, version))
        })
        .transpose()
    }

    async fn doc_page(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        request: &KvListRequest,
        max_bytes: usize,
    ) -> StoreResult<Page<(String, StoredDoc, Version)>> {
        let window = Window::of_keys(request)?;
        let rows: Vec<DocRow> = self
            .read_rows_within(
                sql::LIST_DOCS,
                &[
                    app_id.to_string().into(),
                    collection.as_str().into(),
                    window.after.as_str().into(),
                    window.fetch().into(),
                ],
                max_bytes,
            )
            .await?
            .ok_or(StoreError::ReadTooLarge(max_bytes))?;
        let items = rows
            .into_iter()
            .map(|(id, data, created_at, updated_at, version)| {
                Ok((id, stored(&data, created_at, updated_at)?, version))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(window.page(items, |(id, _, _)| id.clone()))
    }

    async fn doc_find(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        query: &Query,
        fetch: u32,
        max_bytes: usize,
    ) -> StoreResult<Found> {
        let app = app_id.to_string();
        // Read before the documents: a commit that changes the collection after this read
        // changes its version, so an unchanged version at commit proves the find.
        let version: Option<(i64,)> = self
            .read_rows(
                sql::DOC_COLLECTION_VERSION,
                &[app.as_str().into(), collection.as_str().into()],
            )
            .await?
            .pop();
        let find = Find::new(
            E::BACKEND,
            &app,
            collection,
            query,
            fetch,
            Columns::Documents,
        );
        let rows: Vec<DocRow> = self
            .read_rows_within(find.sql(), &find.args, max_bytes)
            .await?
            .ok_or(StoreError::ReadTooLarge(max_bytes))?;
        let docs = rows
            .into_iter()
            .map(|(id, data, created_at, updated_at, version)| {
                Ok((
                    doc_id(&id)?,
                    stored(&data, created_at, updated_at)?,
                    version,
                ))
            })
            .collect::<StoreResult<_>>()?;
        Ok(Found {
            collection_version: version.map_or(0, |(version,)| version),
            docs,
        })
    }

    async fn declare_doc_index(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        path: &FieldPath,
    ) -> StoreResult<DocIndex> {
        let declared_here =
            |declared: Vec<DocIndex>| declared.into_iter().find(|i| i.path == *path);
        if let Some(index) = declared_here(self.doc_indexes(app_id, collection).await?) {
            return Ok(index);
        }
        let path_text = path.to_string();
        let declared = self
            .write(
                sql::DECLARE_DOC_INDEX,
                &[
                    app_id.to_string().into(),
                    collection.as_str().into(),
                    path_text.as_str().into(),
                    i64::from(MAX_DOC_INDEXES_PER_APP).into(),
                ],
            )
            .await?;
        if declared == 0 {
            return Err(StoreError::Conflict(format!(
                "the app has {MAX_DOC_INDEXES_PER_APP} document indexes, the most it may \
                 declare (every index is kept up to date on each document write): withdraw one \
                 first"
            )));
        }
        self.write(Sql::same(&index_ddl(E::BACKEND, path)), &[])
            .await?;
        self.refresh_doc_statistics().await?;
        declared_here(self.doc_indexes(app_id, collection).await?)
            .ok_or(StoreError::NotFound("app"))
    }

    async fn drop_doc_index(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        path: &FieldPath,
    ) -> StoreResult<bool> {
        let path_text = path.to_string();
        let withdrawn = self
            .write(
                sql::UNDECLARE_DOC_INDEX,
                &[
                    app_id.to_string().into(),
                    collection.as_str().into(),
                    path_text.as_str().into(),
                ],
            )
            .await?;
        if withdrawn == 0 {
            return Ok(false);
        }
        let (still,): (i64,) = self
            .fetch_optional(sql::DOC_INDEX_DECLARED, &[path_text.as_str().into()])
            .await?
            .unwrap_or((0,));
        if still == 0 {
            let drop = format!("DROP INDEX IF EXISTS {}", index_name(path));
            self.write(Sql::same(&drop), &[]).await?;
        }
        Ok(true)
    }

    async fn refresh_doc_statistics(&self) -> StoreResult<()> {
        if E::BACKEND == Backend::Sqlite {
            for statement in SQLITE_ANALYZE_DOCS {
                self.write(Sql::same(statement), &[]).await?;
            }
        }
        Ok(())
    }

    async fn doc_indexes(
        &self,
        app_id: AppId,
        collection: &CollectionName,
    ) -> StoreResult<Vec<DocIndex>> {
        let rows: Vec<(String, i64)> = self
            .fetch_all(
                sql::DOC_INDEXES,
                &[app_id.to_string().into(), collection.as_str().into()],
            )
            .await?;
        rows.into_iter()
            .map(|(path, created_at)| {
                Ok(DocIndex {
                    path: FieldPath::parse(&path).map_err(corrupt("doc_indexes"))?,
                    created_at: Timestamp::from_millis(created_at),
                })
            })
            .collect()
    }
}

/// SQLite's statistics of `docs`, from a sample of each index (milliseconds, whatever the
/// table's size): without them its planner cannot tell a declared index that narrows a `$in` to
/// a few documents from the primary key's walk in id order, and takes the walk.
const SQLITE_ANALYZE_DOCS: [&str; 2] = ["PRAGMA analysis_limit = 1000", "ANALYZE docs"];

/// The most document indexes one app may declare (over all its collections): each is an index
/// every document write of every app keeps up to date, so their number is bounded.
pub const MAX_DOC_INDEXES_PER_APP: u32 = 16;

/// What a find reads of each document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Columns {
    /// Id, data, times and version: documents for the caller.
    Documents,
    /// Id and version: a run's commit checking what its find found.
    Versions,
}

/// The SQL of a find and its bound values: `$1` app, `$2` collection, then the conditions'
/// values, then the rows to fetch.
pub(crate) struct Find<'a> {
    sql: String,
    pub args: Vec<Arg<'a>>,
}

impl<'a> Find<'a> {
    pub fn new(
        backend: Backend,
        app: &'a str,
        collection: &'a CollectionName,
        query: &Query,
        fetch: u32,
        columns: Columns,
    ) -> Self {
        let mut find = Self {
            sql: String::new(),
            args: vec![app.into(), collection.as_str().into()],
        };
        let conditions: Vec<String> = query
            .conditions
            .iter()
            .map(|condition| find.condition(backend, &condition.path, &condition.test))
            .collect();
        let order = match (&query.sort, backend) {
            (None, _) => "id".to_owned(),
            (Some(sort), Backend::Sqlite) if !sort.descending => {
                format!("{}, id", key_expr(backend, &sort.path))
            }
            (Some(sort), Backend::Sqlite) => {
                format!("{} DESC, id DESC", key_expr(backend, &sort.path))
            }
            (Some(sort), Backend::Postgres) if !sort.descending => {
                format!("{} NULLS FIRST, id", key_expr(backend, &sort.path))
            }
            (Some(sort), Backend::Postgres) => {
                format!("{} DESC NULLS LAST, id DESC", key_expr(backend, &sort.path))
            }
        };
        let limit = find.bind(i64::from(fetch).into());
        let columns = match columns {
            Columns::Documents => "id, CAST(data AS TEXT), created_at, updated_at, version",
            Columns::Versions => "id, version",
        };
        let mut sql = format!("SELECT {columns} FROM docs WHERE app_id = $1 AND collection = $2");
        for condition in conditions {
            sql.push_str(" AND (");
            sql.push_str(&condition);
            sql.push(')');
        }
        sql.push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
        find.sql = sql;
        find
    }

    pub fn sql(&self) -> Sql<'_> {
        Sql::same(&self.sql)
    }

    /// Binds `arg`; answers its placeholder.
    fn bind(&mut self, arg: Arg<'a>) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    fn condition(&mut self, backend: Backend, path: &FieldPath, test: &Test) -> String {
        let key = key_expr(backend, path);
        let not_equal = match backend {
            Backend::Sqlite => "IS NOT",
            Backend::Postgres => "IS DISTINCT FROM",
        };
        let range = |this: &mut Self, value: &Scalar, op: &str, upward: bool| {
            let at = this.bind(encode(backend, value));
            let band = value.band().unwrap_or(Band::Number);
            let (low, high) = bounds(backend, band);
            if upward {
                let high = this.bind(high);
                format!("{key} {op} {at} AND {key} < {high}")
            } else {
                let low = this.bind(low);
                format!("{key} {op} {at} AND {key} >= {low}")
            }
        };
        match test {
            Test::Eq(Scalar::Null) => format!("{key} IS NULL"),
            Test::Eq(value) => {
                let at = self.bind(encode(backend, value));
                match contained(backend, path, value) {
                    Some(document) => {
                        let document = self.bind(document.into());
                        format!("{key} = {at} AND data @> CAST({document} AS jsonb)")
                    }
                    None => format!("{key} = {at}"),
                }
            }
            Test::Ne(Scalar::Null) => format!("{key} IS NOT NULL"),
            Test::Ne(value) => {
                let at = self.bind(encode(backend, value));
                format!("{key} {not_equal} {at}")
            }
            Test::Gt(value) => range(self, value, ">", true),
            Test::Gte(value) => range(self, value, ">=", true),
            Test::Lt(value) => range(self, value, "<", false),
            Test::Lte(value) => range(self, value, "<=", false),
            Test::In(values) => {
                let listed: Vec<String> = values
                    .iter()
                    .filter(|value| **value != Scalar::Null)
                    .map(|value| self.bind(encode(backend, value)))
                    .collect();
                let mut any = Vec::new();
                if !listed.is_empty() {
                    any.push(format!("{key} IN ({})", listed.join(", ")));
                }
                if values.contains(&Scalar::Null) {
                    any.push(format!("{key} IS NULL"));
                }
                if any.is_empty() {
                    "1 = 0".to_owned()
                } else {
                    any.join(" OR ")
                }
            }
        }
    }
}

/// The key expression of `path` (see the module's doc). A path's segments are letters, digits,
/// `_` and `-` (`FieldPath::parse`), so they need no escaping in either literal.
pub(crate) fn key_expr(backend: Backend, path: &FieldPath) -> String {
    match backend {
        Backend::Sqlite => {
            let mut at = String::from("'$");
            for segment in path.segments() {
                at.push_str(&format!(".\"{segment}\""));
            }
            at.push('\'');
            format!(
                "CASE json_type(data, {at}) \
                 WHEN 'integer' THEN CAST(json_extract(data, {at}) AS REAL) \
                 WHEN 'real' THEN json_extract(data, {at}) \
                 WHEN 'text' THEN json_extract(data, {at}) \
                 WHEN 'false' THEN x'01' WHEN 'true' THEN x'02' \
                 WHEN 'array' THEN x'03' WHEN 'object' THEN x'04' END"
            )
        }
        Backend::Postgres => format!(
            "picloud_doc_key(data #> '{{{}}}')",
            path.segments().join(",")
        ),
    }
}

/// `value` as the key expression of a field holding it.
fn encode(backend: Backend, value: &Scalar) -> Arg<'static> {
    match (backend, value) {
        (_, Scalar::Null) => Arg::OptText(None),
        (Backend::Sqlite, Scalar::Number(n)) => Arg::Float(*n + 0.0),
        (Backend::Sqlite, Scalar::String(s)) => Arg::Text(s.clone().into()),
        (Backend::Sqlite, Scalar::Bool(b)) => Arg::Blob(vec![if *b { 2 } else { 1 }]),
        (Backend::Postgres, Scalar::Number(n)) => {
            let bits = (*n + 0.0).to_bits() as i64;
            let sortable = if bits >= 0 { bits ^ i64::MIN } else { !bits };
            let mut key = vec![1];
            key.extend_from_slice(&sortable.to_be_bytes());
            Arg::Blob(key)
        }
        (Backend::Postgres, Scalar::String(s)) => {
            let mut key = vec![2];
            key.extend_from_slice(s.as_bytes());
            Arg::Blob(key)
        }
        (Backend::Postgres, Scalar::Bool(b)) => Arg::Blob(vec![if *b { 4 } else { 3 }]),
    }
}

/// The keys of one type: from the first (inclusive) to the second (exclusive).
fn bounds(backend: Backend, band: Band) -> (Arg<'static>, Arg<'static>) {
    match (backend, band) {
        // Every number is above minus infinity and below every TEXT.
        (Backend::Sqlite, Band::Number) => (Arg::Float(f64::NEG_INFINITY), "".into()),
        // Every string is TEXT, below every BLOB.
        (Backend::Sqlite, Band::String) => ("".into(), Arg::Blob(Vec::new())),
        (Backend::Sqlite, Band::Bool) => (Arg::Blob(vec![1]), Arg::Blob(vec![3])),
        (Backend::Postgres, Band::Number) => (Arg::Blob(vec![1]), Arg::Blob(vec![2])),
        (Backend::Postgres, Band::String) => (Arg::Blob(vec![2]), Arg::Blob(vec![3])),
        (Backend::Postgres, Band::Bool) => (Arg::Blob(vec![3]), Arg::Blob(vec![5])),
    }
}

/// Numbers from ±2^53 on may be equal as floats yet differ as JSON numbers.
const EXACT_FLOAT_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// On PostgreSQL, the document that a document holding `value` at `path` contains (`@>`), which
/// the GIN index finds — for the values whose equality containment agrees with: strings,
/// booleans, and numbers below ±2^53.
fn contained(backend: Backend, path: &FieldPath, value: &Scalar) -> Option<String> {
    if backend != Backend::Postgres {
        return None;
    }
    let mut document = match value {
        Scalar::String(s) => serde_json::Value::String(s.clone()),
        Scalar::Bool(b) => serde_json::Value::Bool(*b),
        Scalar::Number(n) if n.abs() < EXACT_FLOAT_INTEGERS => serde_json::json!(n),
        _ => return None,
    };
    for segment in path.segments().iter().rev() {
        let mut map = serde_json::Map::new();
        map.insert(segment.clone(), document);
        document = serde_json::Value::Object(map);
    }
    Some(document.to_string())
}

/// The name of the index of `path`: the same on every node and for every app.
fn index_name(path: &FieldPath) -> String {
    let digest = Sha256::digest(path.to_string().as_bytes());
    format!("docs_path_{}", hex::encode(&digest[..8]))
}

/// The statement that makes the index of `path` when it does not exist.
fn index_ddl(backend: Backend, path: &FieldPath) -> String {
    let name = index_name(path);
    let key = key_expr(backend, path);
    match backend {
        Backend::Sqlite => {
            format!("CREATE INDEX IF NOT EXISTS {name} ON docs (app_id, collection, {key}, id)")
        }
        Backend::Postgres => format!(
            "CREATE INDEX IF NOT EXISTS {name} ON docs (app_id, collection, ({key}) NULLS FIRST, id)"
        ),
    }
}

/// Whether the page `range` read of a collection's documents comes back with the same ids at
/// the same versions.
pub(crate) async fn doc_page_holds<T: CommitTx>(
    tx: &mut T,
    app: &str,
    range: &RangeRead,
) -> StoreResult<bool> {
    let window = Window::of_keys(&range.request)?;
    let rows: Vec<(String, i64)> = tx
        .fetch_all(
            sql::LIST_DOC_VERSIONS,
            &[
                app.into(),
                range.collection.as_str().into(),
                window.after.as_str().into(),
                window.fetch().into(),
            ],
        )
        .await?;
    let page = window.page(rows, |(id, _)| id.clone());
    Ok(page.items == range.entries && page.next_cursor.is_some() == range.more)
}

/// Whether the find `read` made finds the same documents at the same versions, in order: at once
/// when no commit wrote the collection since (its version is unchanged), else by running it again.
pub(crate) async fn query_holds<T: CommitTx>(
    tx: &mut T,
    app: &str,
    read: &picloud_core::tx::QueryRead,
) -> StoreResult<bool> {
    let version: Option<(i64,)> = tx
        .fetch_optional(
            sql::DOC_COLLECTION_VERSION,
            &[app.into(), read.collection.as_str().into()],
        )
        .await?;
    if version.map_or(0, |(version,)| version) == read.collection_version {
        return Ok(true);
    }
    let find = Find::new(
        T::BACKEND,
        app,
        &read.collection,
        &read.query,
        read.fetch,
        Columns::Versions,
    );
    let rows: Vec<(String, i64)> = tx.fetch_all(find.sql(), &find.args).await?;
    Ok(rows.len() == read.results.len()
        && rows
            .iter()
            .zip(&read.results)
            .all(|((id, version), (read_id, read_version))| {
                *id == read_id.to_string() && version == read_version
            }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite's planner does with `filter` on a `docs` table with the index of `path`.
    fn sqlite_plan(path: &str, filter: serde_json::Value) -> Vec<String> {
        let conn = rusqlite::Connection::open_in_memory().expect("a database");
        conn.execute_batch(
            "CREATE TABLE docs (app_id TEXT NOT NULL, collection TEXT NOT NULL, id TEXT NOT NULL, \
             data TEXT NOT NULL, size INTEGER NOT NULL, version BIGINT NOT NULL, \
             created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, \
             PRIMARY KEY (app_id, collection, id))",
        )
        .expect("the table");
        let path = FieldPath::parse(path).expect("a path");
        conn.execute_batch(&index_ddl(Backend::Sqlite, &path))
            .expect("the index");
        for n in 0..500 {
            conn.execute(
                "INSERT INTO docs VALUES ('app', 'c', ?1, ?2, 0, 0, 0, 0)",
                rusqlite::params![
                    format!("{n:05}"),
                    serde_json::json!({"user": {"email": format!("u{n}@x")}}).to_string()
                ],
            )
            .expect("a document");
        }
        for statement in SQLITE_ANALYZE_DOCS {
            conn.execute_batch(statement).expect("the statistics");
        }
        let query = Query::parse(&filter).expect("a filter");
        let collection = CollectionName::parse("c").expect("a collection");
        let find = Find::new(
            Backend::Sqlite,
            "app",
            &collection,
            &query,
            10,
            Columns::Documents,
        );
        let mut statement = crate::sqlite::explain(&conn, &find.sql, &find.args);
        statement.retain(|line| !line.is_empty());
        statement
    }

    // With the statistics the store keeps (`refresh_doc_statistics`), as after a declaration.
    #[test]
    fn sqlite_serves_equality_ranges_and_sort_from_a_declared_index() {
        for filter in [
            serde_json::json!({"user.email": "a@x"}),
            serde_json::json!({"user.email": {"$gte": "a", "$lt": "b"}}),
            serde_json::json!({"user.email": {"$in": ["a", "b"]}}),
            serde_json::json!({"$sort": {"user.email": "desc"}}),
        ] {
            let plan = sqlite_plan("user.email", filter.clone());
            assert!(
                plan.iter()
                    .any(|line| line.contains("USING INDEX docs_path_")),
                "{filter}: {plan:?}"
            );
        }
    }
}
