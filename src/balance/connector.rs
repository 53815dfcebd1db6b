//! Custom connectors: a `tower::Service<Uri>` that opens the byte stream of a
//! connection instead of TCP (Unix sockets, proxies, in-memory transports), as tonic's
//! `Endpoint::connect_with_connector` takes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::Uri;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::{Service, ServiceExt};

use crate::BoxError;

/// A connection's byte stream, as a connector returns it.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

pub(crate) type BoxIo = Box<dyn Io>;

type Connect =
    dyn Fn(Uri) -> Pin<Box<dyn Future<Output = Result<BoxIo, BoxError>> + Send>> + Send + Sync;

/// A connector, type-erased.
#[derive(Clone)]
pub(crate) struct Connector(Arc<Connect>);

impl Connector {
    pub(crate) fn new<C>(connector: C) -> Self
    where
        C: Service<Uri> + Clone + Send + Sync + 'static,
        C::Response: AsyncRead + AsyncWrite + Send + Unpin + 'static,
        C::Error: Into<BoxError>,
        C::Future: Send + 'static,
    {
        Connector(Arc::new(move |uri| {
            let connector = connector.clone();
            Box::pin(async move {
                let io = connector.oneshot(uri).await.map_err(Into::into)?;
                Ok(Box::new(io) as BoxIo)
            })
        }))
    }

    /// Opens a connection to `uri`.
    pub(crate) async fn connect(&self, uri: Uri) -> Result<BoxIo, BoxError> {
        (self.0)(uri).await
    }
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Connector")
    }
}
