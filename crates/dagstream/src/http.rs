//! `--metrics-listen`: `/metrics` (Prometheus text), `/healthz`, `/status`
//! (JSON).

use anyhow::{Context, Result};
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};
use std::net::SocketAddr;
use std::sync::Arc;

/// What `/status` reports, computed on each request.
pub type StatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// [`serve`] when `--metrics-listen` was given.
pub async fn serve_if(
    addr: Option<SocketAddr>,
    registry: &Registry,
    status: StatusFn,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    match addr {
        Some(addr) => Ok(Some(serve(addr, registry.clone(), status, shutdown).await?)),
        None => Ok(None),
    }
}

/// Binds `addr` now (so that a port in use is a startup error) and serves
/// until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    status: StatusFn,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}: is the port in use? pick another with --metrics-listen"))?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut text = Vec::new();
                    let _ = TextEncoder::new().encode(&registry.gather(), &mut text);
                    String::from_utf8(text).unwrap_or_default()
                }
            }),
        )
        .route(
            "/status",
            get(move || {
                let status = status.clone();
                async move { axum::Json(status()) }
            }),
        );
    tracing::info!(%addr, "metrics and status served");
    Ok(tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(cause = %err, "metrics server failed");
        }
    }))
}
