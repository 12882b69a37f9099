//! `docs::collection(name)` and the methods of the handle it returns: the app's document store.
//!
//! As with `kv`, a handle is only a collection name and every call acts for the running
//! execution's app, through the run's transaction (`picloud_core::tx`): reads see the run's own
//! writes and record what they saw of the store; writes reach the store when the run commits.
//! A document comes back as its envelope `#{ id, data, created_at, updated_at }` (times in
//! milliseconds since the epoch, as `time::now()`); filters are `picloud_core::docs::Query`.

use std::fmt;

use picloud_core::docs::{data_text, Query, StoredDoc};
use picloud_core::services::KvListRequest;
use picloud_core::tx::{Overlay, Seen};
use picloud_core::{CapabilityKind, CollectionName, DocumentId, Timestamp};
use rhai::{Array, Dynamic, Engine, Map, Module};

use super::kv::page_options;
use super::{add, error, method, received, service_call, string_arg, SdkResult};
use crate::context::{self, count_write, require, Grant};
use crate::convert::{from_json, to_json_exact};

/// A collection of the running app's document store, as a script holds it.
#[derive(Debug, Clone)]
pub(crate) struct DocsCollection {
    name: CollectionName,
}

impl fmt::Display for DocsCollection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "docs::collection({:?})", self.name.as_str())
    }
}

pub(crate) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<DocsCollection>("DocsCollection");
    let mut module = Module::new();
    add(&mut module, "collection", "The app's document collection `name`: a handle with create, get, update, delete, find, find_one and list", collection);
    engine.register_static_module("docs", module.into());

    method(engine, "create", "Stores a new document (a map) and answers its envelope #{ id, data, created_at, updated_at }", create);
    method(
        engine,
        "get",
        "The envelope of the document `id`, or () when there is none",
        get,
    );
    method(engine, "update", "Replaces the data of the document `id`, keeping its id and created_at, and answers the new envelope", update);
    method(
        engine,
        "delete",
        "Removes the document `id`; true when there was one",
        delete,
    );
    method(
        engine,
        "find",
        "The collection's documents by id, at most 100",
        |docs: &mut DocsCollection| find(docs, &Dynamic::UNIT),
    );
    method(
        engine,
        "find", "The documents a filter finds, in its order: field values or operator maps ($eq $ne $gt $gte $lt $lte $in), $sort and $limit",
        |docs: &mut DocsCollection, filter: Dynamic| find(docs, &filter),
    );
    method(
        engine,
        "find_one",
        "The collection's first document by id, or ()",
        |docs: &mut DocsCollection| find_one(docs, &Dynamic::UNIT),
    );
    method(
        engine,
        "find_one",
        "The first document a filter finds, or ()",
        |docs: &mut DocsCollection, filter: Dynamic| find_one(docs, &filter),
    );
    method(
        engine,
        "list",
        "The first page of the collection by id: #{ items, cursor }",
        |docs: &mut DocsCollection| list(docs, &Dynamic::UNIT),
    );
    method(
        engine,
        "list",
        "A page of the collection by id, after #{ limit, cursor }: #{ items, cursor }",
        |docs: &mut DocsCollection, options: Dynamic| list(docs, &options),
    );
    for name in ["to_string", "to_debug"] {
        method(
            engine,
            name,
            "The handle as text: docs::collection(\"name\")",
            |docs: &mut DocsCollection| docs.to_string(),
        );
    }
}

fn collection(name: Dynamic) -> SdkResult<DocsCollection> {
    const F: &str = "docs::collection";
    let name = string_arg(F, "a collection name", &name)?;
    let name =
        CollectionName::parse(&name).map_err(|err| error(format!("{F}: {}", err.message)))?;
    Ok(DocsCollection { name })
}

/// `docs.create(data)`: a new document with a new id, into the run's transaction.
fn create(docs: &mut DocsCollection, data: Dynamic) -> SdkResult<Dynamic> {
    const F: &str = "docs.create";
    require(F, CapabilityKind::AppDocsWrite)?;
    count_write()?;
    let data = document_data(F, &data)?;
    let now = Timestamp::now();
    let id = DocumentId::new();
    let stored = StoredDoc {
        data,
        created_at: now,
        updated_at: now,
    };
    let shown = envelope(F, &id.to_string(), stored.clone())?;
    context::with_tx(|tx| tx.docs().write(&docs.name, &id, Some(stored)));
    Ok(shown)
}

/// `docs.get(id)`: the envelope, or `()` when there is no such document.
fn get(docs: &mut DocsCollection, id: Dynamic) -> SdkResult<Dynamic> {
    const F: &str = "docs.get";
    let grant = require(F, CapabilityKind::AppDocsRead)?;
    let id = parse_id(F, &id)?;
    match read(F, &grant, &docs.name, id)? {
        Some(stored) => Ok(received(envelope(F, &id.to_string(), stored)?)),
        None => Ok(Dynamic::UNIT),
    }
}

/// `docs.update(id, data)`: replaces the document's data, keeping its id and creation time.
fn update(docs: &mut DocsCollection, id: Dynamic, data: Dynamic) -> SdkResult<Dynamic> {
    const F: &str = "docs.update";
    let grant = require(F, CapabilityKind::AppDocsWrite)?;
    count_write()?;
    let id = parse_id(F, &id)?;
    let data = document_data(F, &data)?;
    let Some(current) = read(F, &grant, &docs.name, id)? else {
        return Err(error(format!(
            "{F}: there is no document '{id}' in the collection '{}' (create makes one)",
            docs.name
        )));
    };
    let stored = StoredDoc {
        data,
        created_at: current.created_at,
        updated_at: Timestamp::now().max(current.updated_at),
    };
    let shown = envelope(F, &id.to_string(), stored.clone())?;
    context::with_tx(|tx| tx.docs().write(&docs.name, &id, Some(stored)));
    Ok(shown)
}

/// `docs.delete(id)`: whether there was a document to delete (which the run read, so its
/// commit checks it still holds).
fn delete(docs: &mut DocsCollection, id: Dynamic) -> SdkResult<bool> {
    const F: &str = "docs.delete";
    let grant = require(F, CapabilityKind::AppDocsWrite)?;
    count_write()?;
    let id = parse_id(F, &id)?;
    let existed = read(F, &grant, &docs.name, id)?.is_some();
    context::with_tx(|tx| tx.docs().write(&docs.name, &id, None));
    Ok(existed)
}

/// `docs.find(filter)`: the envelopes of the documents the filter finds, in its order.
fn find(docs: &mut DocsCollection, filter: &Dynamic) -> SdkResult<Dynamic> {
    const F: &str = "docs.find";
    let query = parse_filter(F, filter)?;
    let found = run_query(F, &docs.name, &query)?;
    let items = context::off_the_books(|| {
        found
            .into_iter()
            .map(|(id, stored)| envelope(F, &id, stored))
            .collect::<SdkResult<Array>>()
    })?;
    Ok(received(Dynamic::from_array(items)))
}

/// `docs.find_one(filter)`: the first document the filter finds, or `()`.
fn find_one(docs: &mut DocsCollection, filter: &Dynamic) -> SdkResult<Dynamic> {
    const F: &str = "docs.find_one";
    let mut query = parse_filter(F, filter)?;
    query.limit = 1;
    match run_query(F, &docs.name, &query)?.into_iter().next() {
        Some((id, stored)) => Ok(received(envelope(F, &id, stored)?)),
        None => Ok(Dynamic::UNIT),
    }
}

/// `docs.list(#{ limit, cursor })`: a page of the collection by id, which is creation order.
fn list(docs: &mut DocsCollection, options: &Dynamic) -> SdkResult<Dynamic> {
    const F: &str = "docs.list";
    let grant = require(F, CapabilityKind::AppDocsRead)?;
    let request: KvListRequest = page_options(F, options, false)?;
    let page = context::off_the_books(|| {
        service_call(
            F,
            grant.services.doc_list(grant.app_id, &docs.name, &request),
        )
    })?;
    let page = context::with_tx(|tx| tx.docs().list(&docs.name, &request, page))
        .ok_or_else(|| error(format!("{F}: called outside an execution")))?;
    let shown = context::off_the_books(|| -> SdkResult<Dynamic> {
        let items = page
            .items
            .into_iter()
            .map(|(id, stored)| envelope(F, &id, stored))
            .collect::<SdkResult<Array>>()?;
        let mut shown = Map::new();
        shown.insert("items".into(), Dynamic::from_array(items));
        shown.insert(
            "cursor".into(),
            page.cursor.map_or(Dynamic::UNIT, Dynamic::from),
        );
        Ok(Dynamic::from_map(shown))
    })?;
    Ok(received(shown))
}

/// The document as the run sees it: its own write if it made one, else the store's (its
/// version recorded in the run's transaction).
fn read(
    function: &str,
    grant: &Grant,
    collection: &CollectionName,
    id: DocumentId,
) -> SdkResult<Option<StoredDoc>> {
    let written = context::with_tx(|tx| match tx.docs().overlay(collection, &id) {
        Overlay::Untouched => None,
        Overlay::Written(stored) => Some(Some(stored.clone())),
        Overlay::Deleted => Some(None),
    })
    .flatten();
    if let Some(written) = written {
        return Ok(written);
    }
    let found = context::off_the_books(|| {
        service_call(
            function,
            grant.services.doc_get(grant.app_id, collection, id),
        )
    })?;
    let seen = found
        .as_ref()
        .map_or(Seen::Absent, |(_, version)| Seen::At(*version));
    context::with_tx(|tx| tx.docs().saw(collection, &id, seen));
    Ok(found.map(|(stored, _)| stored))
}

/// The documents `query` finds as the run sees them (see `Transaction::find`).
fn run_query(
    function: &str,
    collection: &CollectionName,
    query: &Query,
) -> SdkResult<Vec<(String, StoredDoc)>> {
    let grant = require(function, CapabilityKind::AppDocsRead)?;
    let fetch = context::with_tx(|tx| tx.find_fetch(collection, query)).unwrap_or(query.limit);
    let found = context::off_the_books(|| {
        service_call(
            function,
            grant
                .services
                .doc_find(grant.app_id, collection, query, fetch),
        )
    })?;
    context::with_tx(|tx| tx.find(collection, query, fetch, found))
        .ok_or_else(|| error(format!("{function}: called outside an execution")))
}

fn parse_id(function: &str, id: &Dynamic) -> SdkResult<DocumentId> {
    let text = string_arg(function, "a document id", id)?;
    DocumentId::parse(&text).map_err(|err| {
        error(format!(
            "{function}: {err}: a document's id is the `id` its envelope carries"
        ))
    })
}

/// A document's data: a map of JSON values within the size limit.
fn document_data(function: &str, data: &Dynamic) -> SdkResult<serde_json::Value> {
    let data = to_json_exact(data)
        .map_err(|err| error(format!("{function}: the document cannot be stored: {err}")))?;
    data_text(&data, context::max_document_bytes())
        .map_err(|err| error(format!("{function}: {}", err.message)))?;
    Ok(data)
}

fn parse_filter(function: &str, filter: &Dynamic) -> SdkResult<Query> {
    let filter = to_json_exact(filter)
        .map_err(|err| error(format!("{function}: the filter is not JSON: {err}")))?;
    Query::parse(&filter).map_err(|err| error(format!("{function}: {}", err.message)))
}

/// A document as a script sees it: `#{ id, data, created_at, updated_at }`.
fn envelope(function: &str, id: &str, stored: StoredDoc) -> SdkResult<Dynamic> {
    let mut shown = Map::new();
    shown.insert("id".into(), id.into());
    shown.insert(
        "data".into(),
        from_json(stored.data).map_err(|err| error(format!("{function}: {err}")))?,
    );
    shown.insert("created_at".into(), stored.created_at.as_millis().into());
    shown.insert("updated_at".into(), stored.updated_at.as_millis().into());
    Ok(Dynamic::from_map(shown))
}
