//! `kv::collection(name)` and the methods of the handle it returns: the app's key-value store.
//!
//! A handle is only a collection name. The app a call acts for is the running execution's, read
//! from the call context at every call, so a handle cannot reach another app's data whoever
//! made it. Values are stored as JSON: what is written reads back as it was, or is refused.
//!
//! Every call goes through the run's transaction (`picloud_core::tx`): reads see the run's own
//! writes first and record what they saw of the store; writes stay in the transaction until the
//! run commits, after it returns.

use std::fmt;

use picloud_core::events::{kv_value_text, parse_key_prefix, KV_MAX_LIST_LIMIT};
use picloud_core::services::{KvListRequest, KvPage};
use picloud_core::tx::{Overlay, Seen, Version};
use picloud_core::{CapabilityKind, CollectionName, KvKey};
use rhai::{Array, Dynamic, Engine, Map, Module};

use super::{add, error, method, received, service_call, string_arg, SdkResult};
use crate::context::{self, count_write, require, Grant};
use crate::convert::{friendly_type_name, from_json, to_json_exact};

/// Items a `list` call returns when it does not say.
pub(crate) const DEFAULT_LIST_LIMIT: u32 = 100;

/// A collection of the running app's key-value store, as a script holds it.
#[derive(Debug, Clone)]
pub(crate) struct KvCollection {
    name: CollectionName,
}

impl fmt::Display for KvCollection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kv::collection({:?})", self.name.as_str())
    }
}

pub(crate) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<KvCollection>("KvCollection");
    let mut module = Module::new();
    add(
        &mut module,
        "collection",
        "The app's key-value collection `name`: a handle with get, set, has, delete and list",
        collection,
    );
    engine.register_static_module("kv", module.into());

    method(
        engine,
        "get",
        "The value stored under `key`, or () when there is none",
        get,
    );
    method(
        engine,
        "set",
        "Stores `value` (anything JSON can hold) under `key` when the execution commits",
        set,
    );
    method(engine, "has", "Whether a value is stored under `key`", has);
    method(
        engine,
        "delete",
        "Removes the value under `key`; true when there was one",
        delete,
    );
    method(
        engine,
        "list",
        "The first page of keys in order: #{ items: [#{ key, value }], cursor }",
        |kv: &mut KvCollection| list(kv, &Dynamic::UNIT),
    );
    method(engine, "list", "A page of keys in order, after #{ prefix, limit, cursor }: #{ items: [#{ key, value }], cursor }", |kv: &mut KvCollection, options: Dynamic| {
        list(kv, &options)
    });
    for name in ["to_string", "to_debug"] {
        method(
            engine,
            name,
            "The handle as text: kv::collection(\"name\")",
            |kv: &mut KvCollection| kv.to_string(),
        );
    }
}

fn collection(name: Dynamic) -> SdkResult<KvCollection> {
    const F: &str = "kv::collection";
    let name = string_arg(F, "a collection name", &name)?;
    let name =
        CollectionName::parse(&name).map_err(|err| error(format!("{F}: {}", err.message)))?;
    Ok(KvCollection { name })
}

/// `kv.get`: the run's own write of the key if it made one, else the store's entry (its
/// version recorded in the run's transaction).
fn get(kv: &mut KvCollection, key: Dynamic) -> SdkResult<Dynamic> {
    const F: &str = "kv.get";
    let grant = require(F, CapabilityKind::AppKvRead)?;
    let key = parse_key(F, &key)?;
    if let Some(written) = overlay(&kv.name, &key, |value| {
        value.map_or(Ok(Dynamic::UNIT), |value| stored_value(F, value.clone()))
    }) {
        return written;
    }
    let (value, version) = context::off_the_books(|| {
        let entry = service_call(F, grant.services.kv_get(grant.app_id, &kv.name, &key))?;
        let version = entry.as_ref().map(|(_, version)| *version);
        let value = entry.map_or(Ok(Dynamic::UNIT), |(value, _)| stored_value(F, value))?;
        SdkResult::Ok((value, version))
    })?;
    // On the run's books: a script reading many keys holds their record until it commits.
    saw(&kv.name, &key, version);
    Ok(received(value))
}

/// `kv.set`: into the run's transaction; it reaches the store when the run commits.
fn set(kv: &mut KvCollection, key: Dynamic, value: Dynamic) -> SdkResult<()> {
    const F: &str = "kv.set";
    require(F, CapabilityKind::AppKvWrite)?;
    count_write()?;
    let key = parse_key(F, &key)?;
    let value = to_json_exact(&value)
        .map_err(|err| error(format!("{F}: the value cannot be stored: {err}")))?;
    kv_value_text(&value).map_err(|err| error(format!("{F}: {}", err.message)))?;
    context::with_tx(|tx| tx.write(&kv.name, &key, Some(value)));
    Ok(())
}

fn has(kv: &mut KvCollection, key: Dynamic) -> SdkResult<bool> {
    const F: &str = "kv.has";
    let grant = require(F, CapabilityKind::AppKvRead)?;
    let key = parse_key(F, &key)?;
    exists(F, &grant, &kv.name, &key)
}

/// `kv.delete`: into the run's transaction; answers whether there was an entry to delete (which
/// the run read, so its commit checks it still holds).
fn delete(kv: &mut KvCollection, key: Dynamic) -> SdkResult<bool> {
    const F: &str = "kv.delete";
    let grant = require(F, CapabilityKind::AppKvWrite)?;
    count_write()?;
    let key = parse_key(F, &key)?;
    let existed = exists(F, &grant, &kv.name, &key)?;
    context::with_tx(|tx| tx.write(&kv.name, &key, None));
    Ok(existed)
}

fn list(kv: &mut KvCollection, options: &Dynamic) -> SdkResult<Dynamic> {
    const F: &str = "kv.list";
    let grant = require(F, CapabilityKind::AppKvRead)?;
    let request = page_options(F, options, true)?;
    let page = context::off_the_books(|| {
        service_call(F, grant.services.kv_list(grant.app_id, &kv.name, &request))
    })?;
    // On the run's books: the record of the page read, kept until the run commits.
    let KvPage { items, cursor } = context::with_tx(|tx| tx.list(&kv.name, &request, page))
        .ok_or_else(|| error(format!("{F}: called outside an execution")))?;
    let page = context::off_the_books(|| -> SdkResult<Dynamic> {
        let items = items
            .into_iter()
            .map(|(key, value)| {
                let mut item = Map::new();
                item.insert("key".into(), key.into());
                item.insert("value".into(), stored_value(F, value)?);
                Ok(Dynamic::from_map(item))
            })
            .collect::<SdkResult<Array>>()?;
        let mut page = Map::new();
        page.insert("items".into(), Dynamic::from_array(items));
        page.insert("cursor".into(), cursor.map_or(Dynamic::UNIT, Dynamic::from));
        Ok(Dynamic::from_map(page))
    })?;
    Ok(received(page))
}

/// What the run's own writes say of the key, through `read` (`None`: it deleted it); `None`
/// when the run has not written it.
fn overlay<T>(
    collection: &CollectionName,
    key: &KvKey,
    read: impl FnOnce(Option<&serde_json::Value>) -> T,
) -> Option<T> {
    context::with_tx(|tx| match tx.overlay(collection, key) {
        Overlay::Untouched => None,
        Overlay::Written(value) => Some(read(Some(value))),
        Overlay::Deleted => Some(read(None)),
    })
    .flatten()
}

/// Records in the run's transaction what a read of the key from the store saw.
fn saw(collection: &CollectionName, key: &KvKey, version: Option<Version>) {
    let seen = version.map_or(Seen::Absent, Seen::At);
    context::with_tx(|tx| tx.saw(collection, key, seen));
}

/// Whether the key has an entry, as the run sees it.
fn exists(
    function: &str,
    grant: &Grant,
    collection: &CollectionName,
    key: &KvKey,
) -> SdkResult<bool> {
    if let Some(exists) = overlay(collection, key, |value| value.is_some()) {
        return Ok(exists);
    }
    let version = context::off_the_books(|| {
        service_call(
            function,
            grant.services.kv_version(grant.app_id, collection, key),
        )
    })?;
    saw(collection, key, version);
    Ok(version.is_some())
}

/// `list`'s options: `#{ prefix, limit, cursor }` (`prefix` only `with_prefix`: KV, not
/// documents), each optional (`()` counts as absent).
pub(crate) fn page_options(
    function: &str,
    options: &Dynamic,
    with_prefix: bool,
) -> SdkResult<KvListRequest> {
    let mut request = KvListRequest {
        prefix: None,
        limit: DEFAULT_LIST_LIMIT,
        cursor: None,
    };
    if options.is_unit() {
        return Ok(request);
    }
    let Some(options) = options.read_lock::<Map>() else {
        return Err(error(format!(
            "{function}: the options are a map such as #{{ limit: 10 }} (got {})",
            friendly_type_name(options)
        )));
    };
    let known = if with_prefix {
        "use prefix, limit or cursor"
    } else {
        "use limit or cursor"
    };
    for (name, value) in options.iter() {
        match (name.as_str(), value.is_unit()) {
            ("limit" | "cursor", true) => {}
            ("prefix", true) if with_prefix => {}
            ("prefix", false) if with_prefix => {
                let prefix = string_arg(function, "the prefix", value)?;
                let prefix = parse_key_prefix(&prefix)
                    .map_err(|err| error(format!("{function}: {}", err.message)))?;
                request.prefix = Some(prefix);
            }
            ("limit", false) => request.limit = list_limit(function, value)?,
            ("cursor", false) => {
                request.cursor = Some(string_arg(function, "the cursor", value)?);
            }
            (other, _) => {
                return Err(error(format!(
                    "{function}: '{other:.64}' is not an option: {known}"
                )))
            }
        }
    }
    Ok(request)
}

fn list_limit(function: &str, value: &Dynamic) -> SdkResult<u32> {
    let refused = |got: String| {
        error(format!(
            "{function}: the limit must be a whole number from 1 to {KV_MAX_LIST_LIMIT} (got {got})"
        ))
    };
    let limit = value
        .as_int()
        .map_err(|_| refused(friendly_type_name(value)))?;
    u32::try_from(limit)
        .ok()
        .filter(|limit| (1..=KV_MAX_LIST_LIMIT).contains(limit))
        .ok_or_else(|| refused(limit.to_string()))
}

fn parse_key(function: &str, key: &Dynamic) -> SdkResult<KvKey> {
    let key = string_arg(function, "a key", key)?;
    KvKey::parse(&key).map_err(|err| error(format!("{function}: {}", err.message)))
}

/// A value read from the store, as the script sees it.
fn stored_value(function: &str, value: serde_json::Value) -> SdkResult<Dynamic> {
    from_json(value).map_err(|err| error(format!("{function}: {err}")))
}
