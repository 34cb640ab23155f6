//! What the rest of the server sees of the workers (see `workers`): this
//! replica's leadership, and the workers' clients.

use std::collections::HashMap;
use std::sync::Arc;

use cfgd::election::Leader;
use cfgd::Client;
use tokio::sync::watch;

/// What the workers share with the rest of the server.
pub(crate) struct Workers {
    /// This replica's leadership, while it has it.
    pub(crate) leader: watch::Sender<Option<Arc<Leader>>>,
    /// A non-live client per namespace the workers touch.
    pub(crate) clients: tokio::sync::Mutex<HashMap<String, Client>>,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            leader: watch::channel(None).0,
            clients: Default::default(),
        }
    }
}

impl Workers {
    /// Whether this replica runs the workers now.
    pub(crate) fn is_leader(&self) -> bool {
        self.leader.borrow().is_some()
    }
}
