//! `LISTEN` on a connection of its own: what the database tells every node (`crate::Notice`).
//! The channels and who sends on them: `picloud_executions` the records' writer
//! (`super::records`), `picloud_jobs` and `picloud_changes` triggers (migration `0017_notices`).

use picloud_core::AppId;
use sqlx::postgres::{PgListener, PgPool};

use super::records;
use crate::{Notice, StoreError, StoreResult};

const JOBS: &str = "picloud_jobs";
const CHANGES: &str = "picloud_changes";

pub(crate) struct Listener(PgListener);

impl Listener {
    pub(super) async fn start(pool: &PgPool) -> StoreResult<Self> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener
            .listen_all([records::CHANNEL, JOBS, CHANGES])
            .await?;
        Ok(Self(listener))
    }

    /// The next notice. After an error (the connection was lost; notices meanwhile are lost
    /// too), the next call connects and listens again.
    pub(crate) async fn next(&mut self) -> StoreResult<Notice> {
        loop {
            let notification = self.0.recv().await.map_err(StoreError::from)?;
            let payload = notification.payload();
            let notice = match notification.channel() {
                JOBS => Some(Notice::Jobs),
                CHANGES => AppId::parse(payload).ok().map(Notice::Changed),
                records::CHANNEL => records::parse(payload).map(Notice::Records),
                _ => None,
            };
            match notice {
                Some(notice) => return Ok(notice),
                None => tracing::warn!(
                    channel = notification.channel(),
                    payload,
                    "a notice PiCloud does not know; ignored"
                ),
            }
        }
    }
}
