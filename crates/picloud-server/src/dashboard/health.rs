//! `/admin/health`, for the instance admin: whether the database answers (`/readyz`), and each
//! metric of `/metrics` summed over its labels — the whole instance at a glance. Per-app series
//! stay in `/metrics`, which a metrics token may guard; hence the instance admin only.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use maud::html;
use picloud_core::Capability;
use picloud_orchestrator::auth::require;
use picloud_orchestrator::{Platform, Readiness};

use super::layout::{page, Head};
use super::session::{PageResult, Session};

pub fn router() -> Router<Platform> {
    Router::new().route("/admin/health", get(summary))
}

/// Each sample's value summed by metric name (histograms by their `_count` and `_sum`).
fn totals(exposition: &str) -> BTreeMap<&str, f64> {
    let mut totals = BTreeMap::new();
    for line in exposition.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if name.ends_with("_bucket") || name.ends_with("_created") {
            continue;
        }
        if let Ok(value) = value.parse::<f64>() {
            *totals.entry(name).or_insert(0.0) += value;
        }
    }
    totals
}

async fn summary(State(platform): State<Platform>, session: Session) -> PageResult {
    require(session.principal(), Capability::InstanceAdmin)?;
    let readiness = platform.readiness().await;
    let exposition = platform.metrics().scrape().await;
    let body = html! {
        main {
            h1 { "Health" }
            @match &readiness {
                Readiness::Ready => p { span.badge.ok { "ready" } " the database answers" },
                Readiness::NotReady { reason } => p { span.badge.bad { "not ready" } " " (reason) },
            }
            h2 { "Metrics, summed over their labels" }
            div.scroll {
                table {
                    thead { tr { th { "Metric" } th { "Total" } } }
                    tbody {
                        @for (name, total) in totals(&exposition) {
                            tr { td.name { code { (name) } } td { (total) } }
                        }
                    }
                }
            }
            p.muted { "Every series, by app and script: " code { "GET /metrics" } " (Prometheus)." }
        }
    };
    Ok(page(&Head::new("Health"), Some(&session), body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_summed_by_name_without_buckets_or_comments() {
        let exposition = "# TYPE a counter\na_total{app=\"x\"} 2\na_total{app=\"y\"} 3\n\
             b_bucket{le=\"1\"} 9\nb_count 4\nb_sum 0.5\n# EOF";
        let totals = totals(exposition);
        assert_eq!(totals.get("a_total"), Some(&5.0), "{totals:?}");
        assert_eq!(totals.get("b_count"), Some(&4.0), "{totals:?}");
        assert!(!totals.contains_key("b_bucket"), "{totals:?}");
    }
}
