//! `GET /api/v1/sdk`: what the script SDK offers — its namespaces and their functions, the
//! methods of the data handles, each with its number of arguments and a one-line doc — read from
//! the engine's registrations (`picloud_executor::catalogue`). For editors' completions; any
//! signed-in caller may read it.

use axum::routing::get;
use axum::{Json, Router};
use picloud_orchestrator::{sdk_catalogue, Catalogue, Platform};

use crate::extract::Authenticated;

pub fn router() -> Router<Platform> {
    Router::new().route("/api/v1/sdk", get(catalogue))
}

async fn catalogue(_caller: Authenticated) -> Json<&'static Catalogue> {
    Json(sdk_catalogue())
}
