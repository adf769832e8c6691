//! The demo customer API, run in-process so tests read its hit counter
//! directly: a negative test proves the upstream was not reached.

use palisade_demo::api::App;
use palisade_demo::data::Dataset;
use palisade_demo::server;
use std::sync::Arc;

pub struct Upstream {
    pub app: Arc<App>,
    pub port: u16,
    _running: server::Running,
}

impl Upstream {
    pub fn start() -> Upstream {
        let app = Arc::new(App::new(Dataset::generate()));
        let running = server::start("127.0.0.1:0", app.clone(), 4).expect("start demo upstream");
        Upstream {
            port: running.addr().port(),
            app,
            _running: running,
        }
    }

    /// Requests the upstream has served (all paths but `/__demo/*`).
    pub fn hits(&self) -> u64 {
        self.app.hits_total()
    }
}
