//! Starting and stopping a simulator: its configuration, the accept loop, the
//! routes, and the handle tests and scripts hold while it runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, rustls};
use tokio_util::sync::CancellationToken;

use super::account::Account;
use super::api::handle_iam;
use super::connection::serve_connection;
use super::control;
use super::faults::Faults;
use super::record::RecordedRequest;
use super::state::SimState;

/// What a simulator starts with.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The accepted API token (`Authorization: APIKey <token>`).
    pub token: String,
    /// The initial accounts; a later duplicate id replaces an earlier one.
    pub accounts: Vec<Account>,
    /// What `GET /iam/clients/me` returns: the reseller the token belongs to.
    /// It is not one of `accounts`.
    pub owner: Account,
    pub faults: Faults,
    /// Serve HTTPS with this certificate instead of plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl SimConfig {
    /// No accounts, [`Account::default_owner`], no faults.
    pub fn new(token: impl Into<String>) -> SimConfig {
        SimConfig {
            token: token.into(),
            accounts: Vec::new(),
            owner: Account::default_owner(),
            faults: Faults::default(),
            tls: None,
        }
    }

    /// Adds [`Account::generated`] accounts for these ids.
    pub fn with_generated_accounts(mut self, ids: impl IntoIterator<Item = u64>) -> SimConfig {
        self.accounts
            .extend(ids.into_iter().map(Account::generated));
        self
    }

    pub fn with_faults(mut self, faults: Faults) -> SimConfig {
        self.faults = faults;
        self
    }

    /// Serves HTTPS with this certificate chain and private key (PEM).
    pub fn with_tls_pem(mut self, cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<SimConfig> {
        self.tls = Some(super::tls::server_config(cert_pem, key_pem)?);
        Ok(self)
    }
}

/// A running simulator. Dropping it stops it (without waiting);
/// [`Simulator::shutdown`] stops it and waits until every connection is closed.
pub struct Simulator {
    /// `http` or `https`.
    scheme: &'static str,
    state: Arc<SimState>,
    stop: CancellationToken,
    accept_loop: Option<JoinHandle<()>>,
    /// Closed once every connection task has ended.
    connections_ended: Option<mpsc::Receiver<()>>,
}

impl Simulator {
    /// Binds `listen` and serves on the current tokio runtime.
    /// `127.0.0.1:0` picks a free port; see [`Simulator::addr`].
    pub async fn start(config: SimConfig, listen: SocketAddr) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SimState::new(
            config.token,
            config.owner,
            config.accounts,
            config.faults,
            addr,
        ));
        let tls = config.tls.map(TlsAcceptor::from);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let stop = CancellationToken::new();
        // Each connection task holds a sender; when all are gone, `recv` ends.
        let (connection_alive, connections_ended) = mpsc::channel::<()>(1);
        let accept_loop = tokio::spawn(accept_connections(
            listener,
            tls,
            routes(state.clone()),
            stop.clone(),
            connection_alive,
        ));
        Ok(Simulator {
            scheme,
            state,
            stop,
            accept_loop: Some(accept_loop),
            connections_ended: Some(connections_ended),
        })
    }

    /// The bound address (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.state.addr
    }

    /// `http://ADDR` (`https://` when serving TLS), without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.state.addr)
    }

    /// Every request received on `/iam/...`, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    pub fn clear_requests(&self) {
        self.state.clear_requests();
    }

    pub fn account(&self, id: u64) -> Option<Account> {
        self.state.account(id)
    }

    /// Every stored account, by id.
    pub fn accounts(&self) -> Vec<Account> {
        self.state.accounts()
    }

    /// Adds an account, or replaces the one with the same id.
    pub fn insert_account(&self, account: Account) {
        self.state.insert_account(account);
    }

    /// Replaces the faults. Their state starts afresh: the random sequence
    /// restarts from the seed, `FirstPerAccount` counts restart at zero and
    /// the rate-limit bucket is full.
    pub fn set_faults(&self, faults: Faults) {
        self.state.set_faults(faults);
    }

    /// Stops accepting, drops every connection (in-flight requests get no
    /// answer) and waits until the port is closed and all connections ended.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(accept_loop) = self.accept_loop.take() {
            // A panic in the loop has already ended it, which is all we wait for.
            let _ = accept_loop.await;
        }
        if let Some(mut connections_ended) = self.connections_ended.take() {
            while connections_ended.recv().await.is_some() {}
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn routes(state: Arc<SimState>) -> Router {
    Router::new()
        .route(
            "/_sim/requests",
            get(control::list_requests).delete(control::clear_requests),
        )
        .route("/_sim/accounts", get(control::list_accounts))
        .route("/_sim/accounts/{id}", get(control::get_account))
        .route("/iam", any(handle_iam))
        .route("/iam/", any(handle_iam))
        .route("/iam/{*rest}", any(handle_iam))
        .fallback(control::not_found_fallback)
        .with_state(state)
}

async fn accept_connections(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    stop: CancellationToken,
    connection_alive: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                // Small JSON answers: send them now rather than wait for more.
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let connection_stop = stop.child_token();
                let alive = connection_alive.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    serve_connection(stream, tls, router, connection_stop).await;
                    drop(alive);
                });
            }
            Err(error) => {
                // Usually out of file descriptors: wait for some to close
                // instead of spinning on the error.
                tracing::warn!(%error, "simulator could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
