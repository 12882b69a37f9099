//! `dead_letters::{replay, resolve}`: close one of the running app's dead letters from a script,
//! as the admin API does. The app is the running execution's; an id of another app's dead
//! letter is not found, exactly like an id that names nothing.

use picloud_core::{CapabilityKind, DeadLetterId};
use rhai::{Dynamic, Module};

use super::{add, error, service_call, string_arg, SdkResult};
use crate::context::require;

pub(crate) fn module() -> Module {
    let mut module = Module::new();
    add(&mut module, "replay", replay);
    add(&mut module, "resolve", resolve);
    module
}

/// Sends the dead letter's job through the outbox again; answers the new execution's id.
///
/// Refused in a dead-letter handler: a replay keeps the job's trigger depth, so a job that
/// fails again would come back to the handler as a new dead letter, be replayed again, and so
/// on without end — a loop the trigger-depth cap cannot see.
fn replay(id: Dynamic) -> SdkResult<String> {
    const F: &str = "dead_letters::replay";
    let grant = require(F, CapabilityKind::AppDeadLetterManage)?;
    if grant.dead_letter_handler {
        return Err(error(format!(
            "{F}: a dead-letter handler may not replay dead letters: a job that failed again \
             would come back to it without end; resolve it here and replay it from the \
             dashboard or the admin API"
        )));
    }
    let id = parse_id(F, &id)?;
    let execution_id = service_call(F, grant.services.dead_letter_replay(grant.app_id, id))?;
    Ok(execution_id.to_string())
}

/// Marks the dead letter resolved.
fn resolve(id: Dynamic) -> SdkResult<()> {
    const F: &str = "dead_letters::resolve";
    let grant = require(F, CapabilityKind::AppDeadLetterManage)?;
    let id = parse_id(F, &id)?;
    service_call(F, grant.services.dead_letter_resolve(grant.app_id, id))
}

fn parse_id(function: &str, id: &Dynamic) -> SdkResult<DeadLetterId> {
    let id = string_arg(function, "a dead letter id", id)?;
    DeadLetterId::parse(&id).map_err(|err| error(format!("{function}: {err}")))
}
