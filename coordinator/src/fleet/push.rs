//! Pushing directives to connected updaters.

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::Ordering,
};

use super::Fleet;
use crate::domain::directive::Directive;

impl Fleet {
    /// Sends every connected updater its directive if it changed. Agents that follow a
    /// channel share one directive per (channel, group), computed once per pass.
    pub fn push_all(&self) -> usize {
        let _serialized = self.push_lock.lock();
        // Before the sessions are read: see `open_session`.
        self.directive_epoch.fetch_add(1, Ordering::SeqCst);
        let view = self.view();
        let governed: HashSet<String> = self.rollouts.read().keys().cloned().collect();
        let pins = self.pins.read().clone();
        let sessions = self.sessions.all();
        let mut shared: HashMap<(&str, &str), Directive> = HashMap::new();
        let mut pushed = 0;
        for session in &sessions {
            let sent = if governed.contains(&session.channel) || pins.contains(&session.agent_id) {
                session.push(&self.directive_for(
                    &session.agent_id,
                    &session.channel,
                    &session.group,
                ))
            } else {
                let directive = shared
                    .entry((session.channel.as_str(), session.group.as_str()))
                    .or_insert_with(|| view.directive_for(&session.channel, &session.group));
                session.push(directive)
            };
            pushed += usize::from(sent);
        }
        self.counters
            .directives_pushed
            .fetch_add(pushed as u64, Ordering::Relaxed);
        if pushed > 0 {
            tracing::info!(
                pushed,
                connected = sessions.len(),
                "pushed changed directives"
            );
        }
        pushed
    }
}
