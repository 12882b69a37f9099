//! What the SDK offers, read from the engine's own registrations (Rhai's metadata), never from a
//! hand-kept list: the namespaces and their functions, the methods of the data handles, each
//! with its number of arguments and its one-line doc (given where it is registered,
//! `sdk::add` / `sdk::method`). `GET /api/v1/sdk` serves it (editor completions), and the
//! save-time check holds scripts' namespaced calls to it (`kv::colection` → "did you mean
//! kv::collection?").

use std::collections::BTreeMap;
use std::sync::OnceLock;

use picloud_core::Limits;
use rhai::Engine;
use serde::Serialize;

use crate::engine;

/// One function: its name, how many arguments it takes, and what it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SdkFunction {
    pub name: String,
    pub arguments: usize,
    pub doc: String,
}

/// The version of the script SDK (the changelog's "Rhai SDK version"): 1.4 added `import` of
/// module scripts. Additive: every script of an earlier version runs unchanged.
pub const SDK_VERSION: &str = "1.4";

/// The SDK as scripts see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Catalogue {
    /// [`SDK_VERSION`].
    pub version: &'static str,
    /// `namespace::function(…)`: each namespace's functions, by name.
    pub namespaces: BTreeMap<String, Vec<SdkFunction>>,
    /// `handle.method(…)`: each handle type's methods (the receiver not counted), by name.
    pub methods: BTreeMap<String, Vec<SdkFunction>>,
}

/// The handle types whose methods the catalogue lists.
const HANDLE_TYPES: [&str; 2] = ["KvCollection", "DocsCollection"];

impl Catalogue {
    /// The catalogue of `engine`'s registrations.
    pub(crate) fn of(engine: &Engine) -> Self {
        let metadata: serde_json::Value = engine
            .gen_fn_metadata_to_json(false)
            .ok()
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default();
        let mut catalogue = Self {
            version: SDK_VERSION,
            ..Self::default()
        };
        if let Some(modules) = metadata["modules"].as_object() {
            for (namespace, module) in modules {
                let functions = module["functions"]
                    .as_array()
                    .map(|functions| functions.iter().map(|f| function(f, 0)).collect())
                    .unwrap_or_default();
                catalogue
                    .namespaces
                    .insert(namespace.clone(), sorted(functions));
            }
        }
        for f in metadata["functions"].as_array().into_iter().flatten() {
            let receiver = f["params"][0]["type"].as_str().unwrap_or_default();
            let Some(handle) = HANDLE_TYPES
                .iter()
                .find(|handle| receiver.trim_start_matches("&mut ") == **handle)
            else {
                continue;
            };
            let name = f["name"].as_str().unwrap_or_default();
            if matches!(name, "to_string" | "to_debug") {
                continue;
            }
            catalogue
                .methods
                .entry((*handle).to_owned())
                .or_default()
                .push(function(f, 1));
        }
        for methods in catalogue.methods.values_mut() {
            *methods = sorted(std::mem::take(methods));
        }
        catalogue
    }

    /// Whether `namespace` is one of the SDK's.
    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace)
    }

    /// `Ok` when `namespace::name` takes `arguments` arguments; else the sentence saying what
    /// exists, with the closest name when one is close.
    pub fn check_call(&self, namespace: &str, name: &str, arguments: usize) -> Result<(), String> {
        let functions = self
            .namespaces
            .get(namespace)
            .map_or(&[][..], Vec::as_slice);
        let same_name: Vec<&SdkFunction> = functions.iter().filter(|f| f.name == name).collect();
        if same_name.iter().any(|f| f.arguments == arguments) {
            return Ok(());
        }
        if !same_name.is_empty() {
            let mut counts: Vec<String> =
                same_name.iter().map(|f| f.arguments.to_string()).collect();
            counts.dedup();
            return Err(format!(
                "{namespace}::{name} takes {} arguments, not {arguments}",
                counts.join(" or ")
            ));
        }
        let names = functions.iter().map(|f| f.name.as_str());
        Err(match closest(name, names) {
            Some(near) => format!(
                "{namespace}::{name} is not a function of {namespace}; did you mean {namespace}::{near}?"
            ),
            None => format!(
                "{namespace}::{name} is not a function of {namespace} (it has {})",
                functions
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }

    /// The sentence for a call in `namespace`, which is neither the SDK's nor imported.
    pub fn unknown_namespace(&self, namespace: &str) -> String {
        let names = self.namespaces.keys().map(String::as_str);
        match closest(namespace, names) {
            Some(near) => format!(
                "'{namespace}' is not a namespace of the SDK nor a module this script imports; did \
                 you mean {near}?"
            ),
            None => format!(
                "'{namespace}' is not a namespace of the SDK nor a module this script imports \
                 (import a module with `import \"{namespace}\" as {namespace};`)"
            ),
        }
    }
}

/// The SDK's catalogue, read once from an engine built as the executor builds its own.
pub fn sdk_catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| Catalogue::of(&engine::build(&Limits::default())))
}

fn function(metadata: &serde_json::Value, receiver: usize) -> SdkFunction {
    let doc = metadata["docComments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .map(|line| line.trim_start_matches("///").trim())
        .collect::<Vec<_>>()
        .join(" ");
    SdkFunction {
        name: metadata["name"].as_str().unwrap_or_default().to_owned(),
        arguments: metadata["numParams"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or_default()
            .saturating_sub(receiver),
        doc,
    }
}

fn sorted(mut functions: Vec<SdkFunction>) -> Vec<SdkFunction> {
    functions.sort_by(|a, b| (&a.name, a.arguments).cmp(&(&b.name, b.arguments)));
    functions
}

/// The name of `names` closest to `wanted`, when it is close: at most two edits away, and fewer
/// than half the name's length. Also what "did you mean" names for a missing module.
pub fn closest<'n>(wanted: &str, names: impl Iterator<Item = &'n str>) -> Option<&'n str> {
    names
        .map(|name| (strsim::levenshtein(wanted, name), name))
        .filter(|(distance, name)| *distance <= 2 && *distance * 2 < name.len().max(wanted.len()))
        .min()
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_lists_every_namespace_and_handle_with_a_doc_for_each_function() {
        let catalogue = sdk_catalogue();
        // Every namespace scripts can call is a name no module may take.
        for namespace in catalogue.namespaces.keys() {
            assert!(
                picloud_core::input::RESERVED_MODULE_NAMES.contains(&namespace.as_str()),
                "{namespace} is not reserved"
            );
        }
        assert!(catalogue.has_namespace("kv") && catalogue.has_namespace("dead_letters"));
        let kv = &catalogue.namespaces["kv"];
        assert_eq!(kv[0].name, "collection");
        assert_eq!(kv[0].arguments, 1);
        let docs = &catalogue.methods["DocsCollection"];
        assert!(docs.iter().any(|f| f.name == "find" && f.arguments == 1));
        assert!(docs.iter().any(|f| f.name == "find" && f.arguments == 0));
        for (owner, functions) in catalogue.namespaces.iter().chain(&catalogue.methods) {
            for f in functions {
                assert!(!f.doc.is_empty(), "{owner}::{} has no doc", f.name);
            }
        }
    }

    #[test]
    fn a_wrong_name_gets_the_closest_one_and_a_wrong_count_the_right_one() {
        let catalogue = sdk_catalogue();
        assert!(catalogue.check_call("kv", "collection", 1).is_ok());
        assert_eq!(
            catalogue
                .check_call("kv", "colection", 1)
                .expect_err("a typo"),
            "kv::colection is not a function of kv; did you mean kv::collection?"
        );
        assert_eq!(
            catalogue
                .check_call("json", "parze", 1)
                .expect_err("a typo"),
            "json::parze is not a function of json; did you mean json::parse?"
        );
        assert_eq!(
            catalogue
                .check_call("random", "int", 1)
                .expect_err("a count"),
            "random::int takes 2 arguments, not 1"
        );
        assert!(catalogue
            .check_call("time", "tomorrow", 0)
            .expect_err("nothing close")
            .contains("(it has format, now, now_secs, parse)"));
        assert!(catalogue
            .unknown_namespace("kvv")
            .ends_with("did you mean kv?"));
    }
}
