//! `json::{parse, stringify, stringify_pretty}`: JSON text ↔ script values, converting as the
//! response rules do (objects ↔ maps, `null` ↔ `()`).

use rhai::{Dynamic, Module};

use super::{add, error, SdkResult};
use crate::bounded::Sizes;
use crate::convert::{from_json, to_json};

pub(crate) fn module(sizes: Sizes) -> Module {
    let mut module = Module::new();
    // A JSON text becomes values many times its size (`[0,0,…]`: 16 bytes per 2), built in one
    // call before the memory budget looks: so the text is bounded by the string limit.
    add(
        &mut module,
        "parse",
        "The value of a JSON text: objects become maps, null becomes ()",
        move |text: &str| -> SdkResult<Dynamic> {
            if text.len() > sizes.string {
                return Err(error(format!(
                    "json::parse: the text is {} bytes, longer than the string limit of {} bytes",
                    text.len(),
                    sizes.string
                )));
            }
            let value = serde_json::from_str::<serde_json::Value>(text)
                .map_err(|err| error(format!("json::parse: the text is not valid JSON: {err}")))?;
            from_json(value)
        },
    );
    add(
        &mut module,
        "stringify",
        "A value as compact JSON text",
        |value: Dynamic| -> SdkResult<String> {
            let json = to_json(&value).map_err(|err| error(format!("json::stringify: {err}")))?;
            Ok(json.to_string())
        },
    );
    add(
        &mut module,
        "stringify_pretty",
        "A value as indented JSON text",
        |value: Dynamic| -> SdkResult<String> {
            let json =
                to_json(&value).map_err(|err| error(format!("json::stringify_pretty: {err}")))?;
            serde_json::to_string_pretty(&json)
                .map_err(|err| error(format!("json::stringify_pretty: {err}")))
        },
    );
    module
}
