//! `json::{parse, stringify, stringify_pretty}`: JSON text ↔ script values, converting as the
//! response rules do (objects ↔ maps, `null` ↔ `()`).

use rhai::{Dynamic, Module};

use super::{add, error, SdkResult};
use crate::convert::{from_json, to_json};

pub(crate) fn module() -> Module {
    let mut module = Module::new();
    add(&mut module, "parse", |text: &str| -> SdkResult<Dynamic> {
        let value = serde_json::from_str::<serde_json::Value>(text)
            .map_err(|err| error(format!("json::parse: the text is not valid JSON: {err}")))?;
        from_json(value)
    });
    add(
        &mut module,
        "stringify",
        |value: Dynamic| -> SdkResult<String> {
            let json = to_json(&value).map_err(|err| error(format!("json::stringify: {err}")))?;
            Ok(json.to_string())
        },
    );
    add(
        &mut module,
        "stringify_pretty",
        |value: Dynamic| -> SdkResult<String> {
            let json =
                to_json(&value).map_err(|err| error(format!("json::stringify_pretty: {err}")))?;
            serde_json::to_string_pretty(&json)
                .map_err(|err| error(format!("json::stringify_pretty: {err}")))
        },
    );
    module
}
