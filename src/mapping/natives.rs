//! The built-in functions mapping expressions can call, registered as jq natives.
//! Each is a thin adapter from jaq values to a function of [`super::builtins`].

use jaq_core::DataT;
use jaq_core::native::Fun;
use jaq_json::Val;

pub fn funs<D: for<'a> DataT<V<'a> = Val>>() -> impl Iterator<Item = Fun<D>> {
    std::iter::empty()
}
