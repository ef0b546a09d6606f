//! Test doubles shared by the integration tests: a recording dataplane and an
//! API server on a random localhost port.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rvs_control::api::{router, ApiOptions, ApiState, Dataplane, PublishReport};
use rvs_control::config::Config;
use rvs_dataplane::snapshot::Snapshot;
use rvs_dataplane::stats::{ConnFilter, ConnInfo, ServiceStats};
use rvs_dataplane::wire::MacAddr;
use serde_json::{json, Value};

/// Test double of the DPDK side: records every published snapshot and serves
/// whatever counters and connections the test sets.
#[derive(Default)]
pub struct Recorder {
    pub published: Mutex<Vec<Arc<Snapshot>>>,
    pub stats: Mutex<Vec<ServiceStats>>,
    pub conns: Mutex<Vec<ConnInfo>>,
    pub zeroed: AtomicUsize,
}

impl Dataplane for Recorder {
    fn port_macs(&self) -> Vec<MacAddr> {
        vec![MacAddr([0x02, 0, 0, 0, 0, 1])]
    }

    fn publish(&self, snapshot: Arc<Snapshot>) -> PublishReport {
        let generation = snapshot.generation;
        self.published.lock().push(snapshot);
        PublishReport { generation, workers: 2, adopted: true, adopt_us: 17 }
    }

    fn stats(&self) -> Value {
        json!({
            "workers": [
                { "worker": 0, "lcore": 1, "counters": { "rx_packets": 10, "rx_bytes": 1000, "tx_packets": 9, "tx_bytes": 900,
                  "drop_no_service": 1, "drop_conn_table_full": 0, "redirect_out": 2, "redirect_in": 3, "conn_active": 5,
                  "generation": 1, "conn_created": 7 } },
                { "worker": 1, "lcore": 2, "counters": { "rx_packets": 20, "drop_no_service": 4, "conn_active": 6, "syn_flood_pressure": 1 } }
            ],
            "ports": [ { "name": "lan0", "device": "net_ring0", "mac": "02:00:00:00:00:01",
                         "stats": { "ipackets": 30, "opackets": 29, "ibytes": 3000, "obytes": 2900, "imissed": 1,
                                    "ierrors": 0, "oerrors": 0, "rx_nombuf": 0 } } ],
            "mempool": { "size": 8191, "available": 8000 }
        })
    }

    fn service_stats(&self) -> Vec<ServiceStats> {
        self.stats.lock().clone()
    }

    fn connections(&self, filter: &ConnFilter, offset: usize, limit: usize) -> (Vec<ConnInfo>, usize) {
        let all: Vec<ConnInfo> = self.conns.lock().iter().filter(|c| filter.matches(c)).cloned().collect();
        let total = all.len();
        (all.into_iter().skip(offset).take(limit).collect(), total)
    }

    fn zero_stats(&self) {
        self.zeroed.fetch_add(1, Ordering::SeqCst);
        for s in self.stats.lock().iter_mut() {
            s.traffic = Default::default();
            for r in &mut s.reals {
                r.traffic = Default::default();
            }
        }
    }
}

impl Recorder {
    pub fn count(&self) -> usize {
        self.published.lock().len()
    }
}

/// A config with one port and no services.
pub const EMPTY_CONFIG: &str = r#"{
  "workers": [1, 2],
  "conn_table_size": 65536,
  "ports": [ { "name": "lan0", "device": "net_ring0", "addresses": ["10.0.0.1/24", "10.1.255.254/16", "203.0.113.1/24"] } ],
  "routes": [ { "prefix": "0.0.0.0/0", "via": "10.0.0.254", "port": "lan0" } ]
}"#;

/// An API server on 127.0.0.1 with a random port, on its own runtime thread.
pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<ApiState>,
    pub dataplane: Arc<Recorder>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(config: Config, options: ApiOptions) -> Server {
        let dataplane = Arc::new(Recorder::default());
        let state = ApiState::with_options(config, 1, dataplane.clone(), options);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(Arc::clone(&state));
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                addr_tx.send(listener.local_addr().expect("addr")).expect("send addr");
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        let addr = addr_rx.recv().expect("server address");
        Server { addr, state, dataplane, stop: Some(stop_tx), thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The config in force (blocking).
    pub fn config(&self) -> Config {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(self.state.config())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
