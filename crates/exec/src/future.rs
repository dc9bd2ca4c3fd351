//! Two small helpers of the calls' `select!` loops.

use std::future::Future;
use std::pin::Pin;

/// A boxed future, as the loops keep in an `Option` until it is needed.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Polls the future if there is one, else never completes (a disabled `select!` branch).
pub(crate) async fn maybe<F: Future + Unpin>(f: &mut Option<F>) -> F::Output {
    match f.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}
