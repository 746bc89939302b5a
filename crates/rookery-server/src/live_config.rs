//! The configuration a running server reads, replaceable on SIGHUP: code keeps reading
//! `server.config.x` as a plain `&Config`, and a reload swaps what that points to.

use rookery_core::config::Config;
use std::sync::atomic::{AtomicPtr, Ordering};

/// The current configuration. A replaced one is leaked on purpose: references to it may still be
/// held by tasks, and an operator reloads a handful of times, a few kilobytes each; the current
/// one is freed with the server.
pub struct LiveConfig(AtomicPtr<Config>);

impl LiveConfig {
    pub fn new(config: Config) -> LiveConfig {
        LiveConfig(AtomicPtr::new(Box::into_raw(Box::new(config))))
    }

    /// Makes `config` current for every reader from now on.
    pub fn replace(&self, config: Config) {
        // The old one stays allocated for readers that hold it (see the type's comment).
        self.0
            .swap(Box::into_raw(Box::new(config)), Ordering::AcqRel);
    }
}

impl std::ops::Deref for LiveConfig {
    type Target = Config;

    fn deref(&self) -> &Config {
        // SAFETY: the pointer comes from `Box::into_raw` and is never freed while `self` lives:
        // `replace` leaks the previous box, and only `drop` (with no borrow of `self` left)
        // frees the current one.
        unsafe { &*self.0.load(Ordering::Acquire) }
    }
}

impl Drop for LiveConfig {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no reference from `deref` is alive, and this box is ours.
        drop(unsafe { Box::from_raw(*self.0.get_mut()) });
    }
}

impl std::fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_the_replacement_and_old_references_stay_valid() {
        let live = LiveConfig::new(Config::default());
        let before: &Config = &live;
        live.replace(Config {
            admins: vec!["boss@localhost".into()],
            ..Config::default()
        });
        assert!(before.admins.is_empty());
        assert_eq!(live.admins, vec!["boss@localhost".to_string()]);
    }
}
