//! The state one running simulator shares between its connections: accounts,
//! the request log and the fault state. Every lock is held only for a few
//! field copies, never across an await.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use axum::response::Response;

use super::account::Account;
use super::faults::{Admission, Fault, FaultState, Faults};
use super::list::ClientQuery;
use super::record::{RecordedRequest, RequestLog};

pub(crate) struct SimState {
    pub token: String,
    pub owner: Account,
    /// The bound address, for page links when a request has no `Host`.
    pub addr: SocketAddr,
    pub started: Instant,
    accounts: Mutex<BTreeMap<u64, Account>>,
    faults: Mutex<FaultState>,
    log: Mutex<RequestLog>,
}

/// A poisoned lock only means a test thread panicked mid-update of plain
/// data; the data is still usable, so keep serving.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SimState {
    pub fn new(
        token: String,
        owner: Account,
        accounts: Vec<Account>,
        faults: Faults,
        addr: SocketAddr,
    ) -> SimState {
        let started = Instant::now();
        SimState {
            token,
            owner,
            addr,
            started,
            accounts: Mutex::new(accounts.into_iter().map(|a| (a.id, a)).collect()),
            faults: Mutex::new(FaultState::new(faults, started)),
            log: Mutex::new(RequestLog::default()),
        }
    }

    /// Logs a request, stamped with when it arrived. The stamp is taken
    /// under the log's lock, so that the log is in arrival order even when
    /// requests arrive together on several threads.
    pub fn record(&self, mut request: RecordedRequest) -> u64 {
        let mut log = lock(&self.log);
        request.at = self.started.elapsed();
        log.push(request)
    }

    /// Notes the status of `response` on record `seq` and passes it on.
    pub fn answered(&self, seq: u64, response: Response) -> Response {
        lock(&self.log).answered(seq, response.status().as_u16());
        response
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.log).snapshot()
    }

    pub fn clear_requests(&self) {
        lock(&self.log).clear();
    }

    pub fn faults(&self) -> Arc<Faults> {
        lock(&self.faults).faults()
    }

    /// Replaces the faults and starts their state afresh: a new random
    /// sequence from the seed, empty per-account counters, a full bucket.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = FaultState::new(faults, Instant::now());
    }

    pub fn admit(&self) -> Admission {
        lock(&self.faults).admit(Instant::now())
    }

    pub fn pick_fault(&self, method: &str, client_id: Option<u64>) -> Option<Fault> {
        lock(&self.faults).pick(method, client_id)
    }

    pub fn account(&self, id: u64) -> Option<Account> {
        lock(&self.accounts).get(&id).cloned()
    }

    pub fn accounts(&self) -> Vec<Account> {
        lock(&self.accounts).values().cloned().collect()
    }

    pub fn insert_account(&self, account: Account) {
        lock(&self.accounts).insert(account.id, account);
    }

    /// Changes one account in place; the updated copy, or `None` if unknown.
    pub fn update_account(&self, id: u64, change: impl FnOnce(&mut Account)) -> Option<Account> {
        let mut accounts = lock(&self.accounts);
        let account = accounts.get_mut(&id)?;
        change(account);
        Some(account.clone())
    }

    pub fn select_accounts(&self, query: &ClientQuery) -> (usize, Vec<Account>) {
        query.select(lock(&self.accounts).values())
    }
}
