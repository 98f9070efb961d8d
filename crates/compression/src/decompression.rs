use tower_layer::Layer;

/// Decompresses request bodies (gzip and deflate; br and zstd with the crate's `br` and `zstd`
/// features) with a hard limit on the decompressed size. A body in an encoding not compiled in
/// is answered `415 Unsupported Media Type`, with `Accept-Encoding` listing those that are
/// (tower-http's behaviour). Past `max_bytes` reading the body fails with tower-http's length-limit error, which
/// axum's extractors answer with `413 Payload Too Large`. tower-http's
/// `RequestDecompressionLayer` inside a `RequestBodyLimitLayer` applied to the decompressed
/// stream.
#[derive(Clone, Copy, Debug)]
pub struct RequestDecompressionLayer {
    max_bytes: usize,
}

impl RequestDecompressionLayer {
    /// Decompressed bodies are limited to `max_bytes`.
    pub const fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

/// The stack built by [`RequestDecompressionLayer`].
pub type RequestDecompression<S> =
    tower_http::decompression::RequestDecompression<tower_http::limit::RequestBodyLimit<S>>;

impl<S> Layer<S> for RequestDecompressionLayer {
    type Service = RequestDecompression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        // The limit wraps the *decompressed* body, so it counts what would be allocated.
        let limited = tower_http::limit::RequestBodyLimitLayer::new(self.max_bytes).layer(inner);
        tower_http::decompression::RequestDecompressionLayer::new().layer(limited)
    }
}
