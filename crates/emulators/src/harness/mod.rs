//! What every emulator shares, so that each vendor module keeps only its protocol and its
//! state: serving on a bound listener ([`serve`]), the state lock ([`Locked`]), the key check
//! ([`auth`]), fault injection ([`Fault`], [`inject`]), the request log ([`Traffic`]), and
//! reading bodies and writing answers ([`http`]).

pub(crate) mod auth;
mod fault;
pub(crate) mod http;
mod serve;
mod traffic;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub use fault::Fault;
pub(crate) use fault::{FaultAnswers, inject};
pub(crate) use serve::serve;
pub(crate) use traffic::Traffic;

/// A vendor's state behind one lock. A panic elsewhere (a test's failed assertion while it held
/// the lock) must not wedge the emulator: the state is plain data, so a poisoned lock is used
/// as it is.
#[derive(Debug, Default)]
pub(crate) struct Locked<T>(Mutex<T>);

impl<T> Locked<T> {
    pub(crate) fn new(value: T) -> Self {
        Locked(Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
