//! `GET /api/v1/stream` (server-sent events) and the version timeline. A stream only
//! forwards what the shared snapshot task (`crate::live`) published: `summary`, `rollouts`
//! and `reasons` (agents per group by reason code) on connect and whenever they change,
//! `event` for each new event. Browsers send
//! the token with fetch streaming, so the bearer layer applies as to every route; an open
//! stream re-checks its token (in memory) and ends once it is revoked.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::get,
};
use drover_api as api;
use futures::Stream;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, broadcast, watch};
use utoipa::IntoParams;

use super::query::ApiQuery;
use crate::{
    domain::now_ms,
    error::{DroverError, Result},
    fleet::Fleet,
    live::{LiveFeed, MAX_STREAMS},
};

const MAX_HOURS: u32 = 720;

pub fn router(fleet: Arc<Fleet>, feed: LiveFeed) -> Router {
    Router::new()
        .route("/api/v1/stream", get(stream).with_state(feed))
        .route(
            "/api/v1/fleet/versions/timeline",
            get(timeline).with_state(fleet),
        )
}

/// How often a quiet stream re-checks its token.
const RECHECK: Duration = Duration::from_secs(5);

/// What one stream holds: its receivers, its token and its place under the cap.
struct Subscriber {
    fleet: Arc<Fleet>,
    authorization: Option<axum::http::HeaderValue>,
    recheck: tokio::time::Interval,
    summary: watch::Receiver<Option<Arc<str>>>,
    rollouts: watch::Receiver<Option<Arc<str>>>,
    reasons: watch::Receiver<Option<Arc<str>>>,
    events: broadcast::Receiver<Arc<str>>,
    _permit: OwnedSemaphorePermit,
}

impl Subscriber {
    fn still_admitted(&self) -> bool {
        let header = self.authorization.as_ref().map(|value| value.as_bytes());
        self.fleet.admins().authenticate(header).is_ok()
    }

    async fn next(&mut self) -> Option<Event> {
        let event = self.wait().await?;
        self.still_admitted().then_some(event)
    }

    async fn wait(&mut self) -> Option<Event> {
        loop {
            tokio::select! {
                _ = self.recheck.tick() => if !self.still_admitted() {
                    return None;
                },
                changed = self.summary.changed() => {
                    changed.ok()?;
                    if let Some(text) = self.summary.borrow_and_update().clone() {
                        return Some(Event::default().event("summary").data(&*text));
                    }
                }
                changed = self.rollouts.changed() => {
                    changed.ok()?;
                    if let Some(text) = self.rollouts.borrow_and_update().clone() {
                        return Some(Event::default().event("rollouts").data(&*text));
                    }
                }
                changed = self.reasons.changed() => {
                    changed.ok()?;
                    if let Some(text) = self.reasons.borrow_and_update().clone() {
                        return Some(Event::default().event("reasons").data(&*text));
                    }
                }
                event = self.events.recv() => match event {
                    Ok(text) => return Some(Event::default().event("event").data(&*text)),
                    // A slow browser missed some: say so, then carry on with the newest.
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        return Some(Event::default().event("lagged").data(missed.to_string()));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
}

async fn stream(State(feed): State<LiveFeed>, headers: axum::http::HeaderMap) -> Response {
    let Ok(permit) = feed.streams.clone().try_acquire_owned() else {
        let error = format!(
            "{MAX_STREAMS} live streams are open already; close a dashboard tab, or retry in a minute"
        );
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "60")],
            Json(api::ErrorBody { error }),
        )
            .into_response();
    };
    let mut summary = feed.summary.clone();
    let mut rollouts = feed.rollouts.clone();
    let mut reasons = feed.reasons.clone();
    // The current snapshots first, so a new page draws at once.
    let first: Vec<Event> = [
        ("summary", summary.borrow_and_update().clone()),
        ("rollouts", rollouts.borrow_and_update().clone()),
        ("reasons", reasons.borrow_and_update().clone()),
    ]
    .into_iter()
    .filter_map(|(name, text)| text.map(|t| Event::default().event(name).data(&*t)))
    .collect();
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let subscriber = Subscriber {
        fleet: feed.fleet.clone(),
        authorization: headers.get(axum::http::header::AUTHORIZATION).cloned(),
        recheck,
        summary,
        rollouts,
        reasons,
        events: feed.events.subscribe(),
        _permit: permit,
    };
    Sse::new(events(first, subscriber))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn events(
    first: Vec<Event>,
    subscriber: Subscriber,
) -> impl Stream<Item = std::result::Result<Event, Infallible>> {
    let initial = futures::stream::iter(first.into_iter().map(Ok));
    let live = futures::stream::unfold(subscriber, |mut s| async move {
        let event = s.next().await?;
        Some((Ok(event), s))
    });
    futures::StreamExt::chain(initial, live)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TimelineQuery {
    /// The last N hours: 1 to 720, 24 by default.
    hours: Option<u32>,
}

/// Agents by version over the last hours, from the samples the coordinator writes once a
/// minute (never recomputed here).
#[utoipa::path(get, path = "/api/v1/fleet/versions/timeline", params(TimelineQuery), responses(
    (status = 200, body = api::VersionTimeline),
    (status = 400, body = api::ErrorBody, description = "hours is not 1 to 720"),
))]
pub async fn timeline(
    State(fleet): State<Arc<Fleet>>,
    ApiQuery(query): ApiQuery<TimelineQuery>,
) -> Result<Json<api::VersionTimeline>> {
    let hours = query.hours.unwrap_or(24);
    if !(1..=MAX_HOURS).contains(&hours) {
        return Err(DroverError::invalid(format!(
            "hours must be 1 to {MAX_HOURS}; {hours} was given"
        )));
    }
    let since = now_ms() - i64::from(hours) * 3_600_000;
    let rows = fleet.store().version_samples(since).await?;
    let mut samples: Vec<api::VersionSample> = Vec::new();
    let mut last_at = None;
    for (at, version, agents) in rows {
        if last_at != Some(at) {
            samples.push(api::VersionSample {
                at: drover_rules::time::rfc3339(at),
                versions: Default::default(),
            });
            last_at = Some(at);
        }
        if let Some(sample) = samples.last_mut() {
            sample.versions.insert(version, agents);
        }
    }
    Ok(Json(api::VersionTimeline { hours, samples }))
}
