//! `dead_letters::{replay, resolve}`: close one of the running app's dead letters from a script,
//! as the admin API does, when the run commits (with its other effects). The app is the running execution's; an id of another app's dead
//! letter is not found, exactly like an id that names nothing.

use picloud_core::tx::DeadLetterAction;
use picloud_core::{CapabilityKind, DeadLetterId, ExecutionId};
use rhai::{Dynamic, Module};

use super::{add, error, service_call, string_arg, SdkResult};
use crate::context::{self, require, Grant};

pub(crate) fn module() -> Module {
    let mut module = Module::new();
    add(
        &mut module,
        "replay",
        "Sends this app's dead letter `id` through the outbox again when the execution commits",
        replay,
    );
    add(
        &mut module,
        "resolve",
        "Marks this app's dead letter `id` resolved when the execution commits",
        resolve,
    );
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
    open(F, &grant, id)?;
    let execution_id = ExecutionId::new();
    context::with_tx(|tx| tx.dead_letter(DeadLetterAction::Replay { id, execution_id }));
    Ok(execution_id.to_string())
}

/// Marks the dead letter resolved.
fn resolve(id: Dynamic) -> SdkResult<()> {
    const F: &str = "dead_letters::resolve";
    let grant = require(F, CapabilityKind::AppDeadLetterManage)?;
    let id = parse_id(F, &id)?;
    open(F, &grant, id)?;
    context::with_tx(|tx| tx.dead_letter(DeadLetterAction::Resolve { id }));
    Ok(())
}

/// Refuses to act on a dead letter that is not the app's or is closed — by the store, or by this
/// run already. The run's commit checks again that it is still open.
fn open(function: &str, grant: &Grant, id: DeadLetterId) -> SdkResult<()> {
    if context::with_tx(|tx| tx.acted_on(id)).unwrap_or(false) {
        return Err(error(format!(
            "{function}: this execution already replayed or resolved the dead letter {id}"
        )));
    }
    service_call(function, grant.services.dead_letter_open(grant.app_id, id))
}

fn parse_id(function: &str, id: &Dynamic) -> SdkResult<DeadLetterId> {
    let id = string_arg(function, "a dead letter id", id)?;
    DeadLetterId::parse(&id).map_err(|err| error(format!("{function}: {err}")))
}
