//! Connected updater sessions: who is connected, their live status, and the handles used
//! to push directives to them.
//!
//! Directives go through a `watch` channel: a push never blocks and a slow updater simply
//! gets the latest directive, never a backlog of stale ones.

use std::{collections::HashMap, sync::Arc};

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::domain::{AgentStatus, Health, UpdaterState, directive::Directive};

/// What a session acknowledges to its updater.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// A report, by attempt id, once committed.
    Report(String),
    /// A report that can never be stored (by attempt id, as sent), and why.
    ReportRefused { attempt_id: String, why: String },
    /// A heartbeat, by sequence, once processed (only when asked for).
    Heartbeat(u64),
}

/// Live status from heartbeats, kept in memory; only changes reach the store.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveStatus {
    pub health: Health,
    pub updater_state: UpdaterState,
    pub agent_version: Option<String>,
    pub last_seen_ms: i64,
    /// `last_seen_ms` as last written to the store.
    pub flushed_seen_ms: i64,
    /// The updater's own last decision (reason code, words), from heartbeats; memory only.
    pub decision_reason: String,
    pub decision_detail: String,
}

pub struct Session {
    pub session_id: String,
    pub agent_id: String,
    pub group: String,
    pub channel: String,
    pub live: Mutex<LiveStatus>,
    directive: watch::Sender<Directive>,
    /// Acks decided while the session's stream handles one message; the stream sends them
    /// before it reads the next, so this holds at most one message's (a report's, or a
    /// heartbeat's that asked). No channel: acks only ever come from that handling.
    acks: Mutex<Vec<Ack>>,
    /// Cancelled when a newer session for the same agent replaces this one, or the agent
    /// is revoked (then `revoked` is set first).
    pub closed: CancellationToken,
    pub revoked: std::sync::atomic::AtomicBool,
}

/// The receiving ends a transport needs to stream to the updater.
pub struct SessionOutbox {
    pub directives: watch::Receiver<Directive>,
    /// False when the updater said it already holds the current directive.
    pub send_current_directive: bool,
}

impl LiveStatus {
    /// Whether `status` differs from this in what the store keeps of it.
    pub fn differs(&self, status: &AgentStatus) -> bool {
        self.health != status.health
            || self.updater_state != status.updater_state
            || self.agent_version.as_deref() != status.agent_version
    }
}

impl Session {
    /// The target of the directive this session serves now, if it names one.
    pub fn current_target(&self) -> Option<semver::Version> {
        self.directive.borrow().target_version.clone()
    }

    pub fn new(
        agent_id: String,
        group: String,
        channel: String,
        live: LiveStatus,
        directive: Directive,
        updater_holds: &str,
    ) -> (Arc<Self>, SessionOutbox) {
        let send_current_directive = directive.directive_id != updater_holds;
        let (directive, directives) = watch::channel(directive);
        let session = Arc::new(Self {
            session_id: uuid::Uuid::new_v4().to_string(),
            agent_id,
            group,
            channel,
            live: Mutex::new(live),
            directive,
            acks: Mutex::new(Vec::new()),
            closed: CancellationToken::new(),
            revoked: std::sync::atomic::AtomicBool::new(false),
        });
        (
            session,
            SessionOutbox {
                directives,
                send_current_directive,
            },
        )
    }

    /// Sends `directive` unless the session already holds one with the same id.
    /// Returns whether anything was sent.
    pub fn push(&self, directive: &Directive) -> bool {
        self.directive.send_if_modified(|current| {
            let changed = current.directive_id != directive.directive_id;
            if changed {
                *current = directive.clone();
            }
            changed
        })
    }

    /// Queues an acknowledgement for the stream to send once the message is handled.
    pub fn ack(&self, ack: Ack) {
        self.acks.lock().push(ack);
    }

    /// The acknowledgements queued since the last call, oldest first.
    pub fn take_acks(&self) -> Vec<Ack> {
        std::mem::take(&mut *self.acks.lock())
    }
}

#[derive(Default)]
pub struct SessionRegistry {
    sessions: RwLock<HashMap<String, Arc<Session>>>,
}

impl SessionRegistry {
    /// Registers `session`, closing any older session of the same agent.
    pub fn insert(&self, session: Arc<Session>) {
        let previous = self
            .sessions
            .write()
            .insert(session.agent_id.clone(), session);
        if let Some(previous) = previous {
            previous.closed.cancel();
        }
    }

    /// Removes the agent's session only if it is still `session_id` (a newer one may
    /// exist); says whether it was.
    pub fn remove(&self, agent_id: &str, session_id: &str) -> bool {
        let mut sessions = self.sessions.write();
        let current = sessions
            .get(agent_id)
            .is_some_and(|s| s.session_id == session_id);
        if current {
            sessions.remove(agent_id);
        }
        current
    }

    /// Cuts the agent's session, if it has one here: its stream ends with "revoked".
    pub fn revoke(&self, agent_id: &str) {
        if let Some(session) = self.sessions.write().remove(agent_id) {
            session
                .revoked
                .store(true, std::sync::atomic::Ordering::SeqCst);
            session.closed.cancel();
        }
    }

    pub fn get(&self, agent_id: &str) -> Option<Arc<Session>> {
        self.sessions.read().get(agent_id).cloned()
    }

    pub fn len(&self) -> usize {
        self.sessions.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot, so callers never hold the registry lock while they work.
    pub fn all(&self) -> Vec<Arc<Session>> {
        self.sessions.read().values().cloned().collect()
    }
}
