//! Views of mapped memory kept together with the mapping they point into.
//!
//! A view such as [`Counter<'a>`](crate::concurrent::counters::Counter) borrows the mapping it
//! was made from, so it cannot be stored in a long-lived struct beside that mapping. A
//! [`MappedView`] is the owner type that can: it holds an `Arc` of the mapping and the view,
//! and lends the view only for as long as the `MappedView` itself is borrowed. The type system
//! enforces the rest:
//!
//! - a view is built by a closure that is given `&'a Owner` for a lifetime it cannot name
//!   (`for<'a>`), so it can only return views of that owner (or of `'static` memory);
//! - [`MappedView::view`] and [`MappedView::with_mut`] hand the view out at the lifetime of the
//!   borrow of the `MappedView`, never as `'static`, and the result of `with_mut` cannot mention
//!   that lifetime, so no view escapes;
//! - [`View::shorten`] is the identity function, which compiles only if the view type is
//!   covariant in its lifetime: that is what makes lending a shorter lifetime sound;
//! - [`Drop`] drops the view before the mapping, in code rather than by field order.
//!
//! A view lent for a borrow compiles:
//!
//! ```
//! use tern_engine::concurrent::atomic_buffer::AtomicBuffer;
//! use tern_engine::mapped_view::MappedView;
//! fn lend<'a>(kept: &'a mut MappedView<AtomicBuffer<'static>>) -> (AtomicBuffer<'a>, usize) {
//!     let capacity = kept.with_mut(|view| view.capacity());
//!     (*kept.view(), capacity)
//! }
//! ```
//!
//! Neither form of escape compiles:
//!
//! ```compile_fail
//! use tern_engine::concurrent::atomic_buffer::AtomicBuffer;
//! use tern_engine::mapped_view::MappedView;
//! fn escape(kept: &MappedView<AtomicBuffer<'static>>) -> AtomicBuffer<'static> {
//!     *kept.view()
//! }
//! ```
//!
//! ```compile_fail
//! use tern_engine::concurrent::atomic_buffer::AtomicBuffer;
//! use tern_engine::mapped_view::MappedView;
//! fn escape(kept: &mut MappedView<AtomicBuffer<'static>>) -> AtomicBuffer<'static> {
//!     kept.with_mut(|view| *view)
//! }
//! ```
//!
//! Who writes the memory behind a view is the view type's business (see [`crate::concurrent`]);
//! a `MappedView` only guarantees that the memory is mapped while the view can be used.

use std::any::Any;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::Arc;

/// A view type, named by its `'static` form, with its lifetime as a parameter.
///
/// # Safety
/// `At<'a>` must be covariant in `'a` (checked by [`View::shorten`] being the identity), must
/// borrow only memory outside itself that lives for `'a` (a view of a mapping), and must own
/// no memory a borrow of it could point into: [`MappedView`] relies on every `'a` borrow in an
/// `At<'a>` pointing into its owner, never into the view value. Implement it through the
/// crate's `views!` macro, for flyweights over an `AtomicBuffer` and integers only.
pub unsafe trait View: 'static {
    /// The view at lifetime `'a`.
    type At<'a>;

    /// Lends a stored view at a borrow's lifetime. Implementations return `view` itself: that
    /// compiles only for a view covariant in its lifetime.
    fn shorten<'s>(view: &'s Self::At<'static>) -> &'s Self::At<'s>;
}

/// Declares view types: each is named by its `'static` form.
macro_rules! views {
    ($($view:ident),* $(,)?) => {
        $(
            // SAFETY: the view types declared here hold only `AtomicBuffer<'a>` views and plain
            // integers: covariant (checked by `shorten`), borrowing only the mapping, owning
            // nothing a borrow could point into.
            unsafe impl View for $view<'static> {
                type At<'a> = $view<'a>;

                fn shorten<'s>(view: &'s $view<'static>) -> &'s $view<'s> {
                    view
                }
            }
        )*
    };
}
// Log buffers (the macro's user outside this module) are built without loom.
#[cfg_attr(loom, allow(unused_imports))]
pub(crate) use views;

use crate::concurrent::atomic_buffer::AtomicBuffer;
use crate::concurrent::broadcast::{BroadcastReceiver, BroadcastTransmitter};
use crate::concurrent::counters::{Counter, CounterReader, CountersManager, CountersReader};
use crate::concurrent::error_log::DistinctErrorLog;
use crate::concurrent::ring_buffer::ManyToOneRingBuffer;

views!(
    AtomicBuffer,
    Counter,
    CounterReader,
    CountersReader,
    CountersManager,
    ManyToOneRingBuffer,
    BroadcastTransmitter,
    BroadcastReceiver,
    DistinctErrorLog,
);

/// A view of mapped memory and the mapping it points into.
pub struct MappedView<V: View> {
    // Both are dropped by hand in `Drop`: the view first, then the mapping.
    view: ManuallyDrop<V::At<'static>>,
    owner: ManuallyDrop<Arc<dyn Any + Send + Sync>>,
}

impl<V: View> MappedView<V> {
    /// Builds a view of `owner` with `make`, which can return only views of the owner.
    pub fn new<O: Any + Send + Sync>(
        owner: Arc<O>,
        make: impl for<'a> FnOnce(&'a O) -> V::At<'a>,
    ) -> Self {
        match Self::try_new(owner, |owner| {
            Ok::<_, std::convert::Infallible>(make(owner))
        }) {
            Ok(view) => view,
            Err(never) => match never {},
        }
    }

    /// Builds a view of `owner` with `make`, which may fail.
    pub fn try_new<O: Any + Send + Sync, E>(
        owner: Arc<O>,
        make: impl for<'a> FnOnce(&'a O) -> Result<V::At<'a>, E>,
    ) -> Result<Self, E> {
        let view = make(&owner)?;
        // SAFETY: `make` was given `&'a O` for a lifetime it cannot name, so `view` borrows at
        // most `owner` (or 'static memory). `owner` is an Arc kept in `Self` until after the
        // view is dropped (see `Drop`), and the Arc's target does not move, so the memory the
        // view points into stays valid for as long as the view exists. The view is lent only at
        // the lifetime of a borrow of `Self` (`view`, `with_mut`), never as 'static.
        let view = unsafe { extend::<V>(view) };
        Ok(Self {
            view: ManuallyDrop::new(view),
            owner: ManuallyDrop::new(owner),
        })
    }

    /// Builds another view of the same mapping from this one (a counter from the counters
    /// section, say). The second argument only names the lifetime of what the view borrows.
    pub fn project<W: View>(
        &self,
        make: impl for<'a, 'b> FnOnce(&'b V::At<'a>, PhantomData<&'a ()>) -> W::At<'a>,
    ) -> MappedView<W> {
        match self
            .try_project::<W, std::convert::Infallible>(|view, lifetime| Ok(make(view, lifetime)))
        {
            Ok(view) => view,
            Err(never) => match never {},
        }
    }

    /// Builds another view of the same mapping from this one, which may fail.
    pub fn try_project<W: View, E>(
        &self,
        make: impl for<'a, 'b> FnOnce(&'b V::At<'a>, PhantomData<&'a ()>) -> Result<W::At<'a>, E>,
    ) -> Result<MappedView<W>, E> {
        let view = make(self.view(), PhantomData)?;
        // SAFETY: `make` is universal in 'a (what the view borrows) and 'b (the borrow of the
        // view itself), and its result may borrow only for 'a: what this view borrows, the
        // mapping `owner` keeps alive (View's contract), never the view value. The new value
        // keeps the mapping alive too (a clone of the same Arc) and drops its view first.
        let view = unsafe { extend::<W>(view) };
        Ok(MappedView {
            view: ManuallyDrop::new(view),
            owner: ManuallyDrop::new(Arc::clone(&self.owner)),
        })
    }

    /// The view, for as long as `self` is borrowed.
    #[inline]
    pub fn view(&self) -> &V::At<'_> {
        V::shorten(&self.view)
    }

    /// The view, mutably, inside `work`; what `work` returns cannot borrow the view.
    #[inline]
    pub fn with_mut<R>(&mut self, work: impl for<'a, 'b> FnOnce(&'b mut V::At<'a>) -> R) -> R {
        let stored: &mut V::At<'static> = &mut self.view;
        // SAFETY: `V::At<'static>` and `V::At<'a>` are one type up to a lifetime, so the cast
        // keeps layout and validity. `work` is universal in 'a and in 'b (the borrow of the
        // view), so it can store into the view only values valid for every 'a — views of the
        // same mapping taken from the view's own 'a borrows, or 'static data — never a borrow
        // of the view value itself (that lives only for 'b); its result type `R` is chosen
        // outside both, so no view leaves `work`. The mapping outlives the call (owned by `self`).
        let lent = unsafe { &mut *std::ptr::from_mut(stored).cast::<V::At<'_>>() };
        work(lent)
    }
}

/// Re-labels a view's lifetime as 'static.
///
/// # Safety
/// The caller keeps the memory the view points into alive for as long as the result is used,
/// and lends the result only at shorter lifetimes.
unsafe fn extend<'a, V: View>(view: V::At<'a>) -> V::At<'static> {
    let view = ManuallyDrop::new(view);
    // SAFETY: one type up to a lifetime (same layout); the original is not dropped (ManuallyDrop),
    // so the value is moved, not duplicated. Liveness is the caller's promise.
    unsafe { std::ptr::from_ref(&*view).cast::<V::At<'static>>().read() }
}

impl<V: View> Drop for MappedView<V> {
    fn drop(&mut self) {
        // SAFETY: each field is dropped exactly once, here, and never used afterwards; the
        // view goes first because it may point into what the owner keeps mapped.
        unsafe {
            ManuallyDrop::drop(&mut self.view);
            ManuallyDrop::drop(&mut self.owner);
        }
    }
}

impl<V: View> std::fmt::Debug for MappedView<V>
where
    for<'a> V::At<'a>: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MappedView").field(self.view()).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    struct Owner(Vec<u64>);

    fn buffer(owner: &Owner) -> AtomicBuffer<'_> {
        // SAFETY: the vector's memory is valid, 8-byte aligned, and lives as long as `owner`.
        unsafe {
            AtomicBuffer::from_raw_parts(owner.0.as_ptr().cast_mut().cast(), owner.0.len() * 8)
        }
    }

    #[test]
    fn a_view_keeps_its_mapping_alive_after_every_other_handle_is_gone() {
        let owner = Arc::new(Owner(vec![0; 16]));
        let mut view = MappedView::<AtomicBuffer<'static>>::new(Arc::clone(&owner), buffer);
        let projected = view.project::<AtomicBuffer<'static>>(|whole, _| whole.view(64, 64));
        drop(owner);
        view.view().put_i64(64, 7);
        assert_eq!(projected.view().get_i64(0), 7);
        let read = view.with_mut(|buffer| buffer.get_i64(64));
        assert_eq!(read, 7);
        drop(view);
        assert_eq!(
            projected.view().get_i64(0),
            7,
            "the projection holds the mapping too"
        );
    }
}
