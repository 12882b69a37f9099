//! `log::{debug, info, warn, error}(value)`: a line in the execution's log at that level, also
//! emitted through `tracing` with the app, script and execution ids. A string is logged as it
//! is; any other value as JSON when it has a JSON form, else as Rhai displays it.

use picloud_core::exec::LogLevel;
use rhai::{Dynamic, Module};

use super::{add, SdkResult};
use crate::context::push_log;
use crate::convert::to_json;
use crate::nesting::show;

pub(crate) fn module() -> Module {
    let mut module = Module::new();
    for (name, level, doc) in [
        (
            "debug",
            LogLevel::Debug,
            "Adds a debug line to the execution's log",
        ),
        (
            "info",
            LogLevel::Info,
            "Adds an info line to the execution's log",
        ),
        (
            "warn",
            LogLevel::Warn,
            "Adds a warning line to the execution's log",
        ),
        (
            "error",
            LogLevel::Error,
            "Adds an error line to the execution's log",
        ),
    ] {
        add(
            &mut module,
            name,
            doc,
            move |value: Dynamic| -> SdkResult<()> {
                push_log(level, text_of(&value));
                Ok(())
            },
        );
    }
    module
}

fn text_of(value: &Dynamic) -> String {
    if value.is_string() {
        return value.to_string();
    }
    match to_json(value) {
        Ok(json) => json.to_string(),
        Err(_) => show(value),
    }
}
