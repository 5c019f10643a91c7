//! A 3-node NATS cluster with JetStream on loopback, one `nats-server`
//! process per node (the standing single server cannot hold replicas):
//! started, stopped and started again by the fleet tests and benches.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::upstreams::{free_port, owns_listener, PORT_TRIES};

/// One node: its client port and its process while it runs.
pub struct NatsNode {
    pub name: String,
    pub port: u16,
    cluster_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// The cluster; every node is killed on drop.
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

impl NatsNode {
    fn start(&mut self) {
        let log = std::fs::File::create(&self.log).expect("nats log file");
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect(
                "nats-server is on the machines (see PEERS.md); it is needed for the fleet tests",
            );
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The node's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl NatsCluster {
    /// Writes one config per node under `dir` and starts them; returns once
    /// every node holds its client and cluster ports (JetStream's metadata
    /// leader is elected a moment later: see [`NatsCluster::wait_jetstream`]).
    /// Ports found free can be taken before a node binds them; then the
    /// node exits, and the whole cluster starts again on new ports, up to
    /// [`PORT_TRIES`] times.
    pub fn start(dir: &Path) -> NatsCluster {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut cluster = NatsCluster::start_once(dir);
            let failed = (0..3).find_map(|i| cluster.wait_listening(i).err());
            match failed {
                None => return cluster,
                Some(why) if tries == PORT_TRIES => {
                    panic!("the NATS cluster did not start in {tries} tries: {why}")
                }
                Some(_) => drop(cluster),
            }
        }
    }

    fn start_once(dir: &Path) -> NatsCluster {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, cluster)| format!("nats-route://127.0.0.1:{cluster}"))
            .collect();
        let mut nodes = Vec::new();
        for (i, (port, cluster)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let store = dir.join(format!("{name}-store"));
            // A store left by an earlier try belongs to another cluster.
            let _ = std::fs::remove_dir_all(&store);
            std::fs::create_dir_all(&store).unwrap();
            let config = dir.join(format!("{name}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: {name}\nlisten: 127.0.0.1:{port}\n\
                     jetstream {{ store_dir: \"{store}\" }}\n\
                     cluster {{ name: s3tap-test, listen: 127.0.0.1:{cluster}, routes: [{routes}] }}\n",
                    store = store.display(),
                    routes = routes.join(", "),
                ),
            )
            .unwrap();
            let mut node = NatsNode {
                log: dir.join(format!("{name}.log")),
                name,
                port: *port,
                cluster_port: *cluster,
                config,
                child: None,
            };
            node.start();
            nodes.push(node);
        }
        NatsCluster { nodes }
    }

    /// Every node, as a client URL list.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Stops node `i` at once (SIGKILL: no goodbye to the cluster).
    pub fn stop(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i` again, with the store it had.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].start();
        self.wait_port(i);
    }

    fn wait_port(&mut self, i: usize) {
        if let Err(why) = self.wait_listening(i) {
            panic!("{why}");
        }
    }

    /// Waits until node `i`'s own process holds its client and cluster
    /// ports (a connect alone could reach whatever took a port first).
    fn wait_listening(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let Some(child) = node.child.as_mut() else {
                return Err(format!("nats node {} is not running", node.name));
            };
            if owns_listener(child.id(), node.port) && owns_listener(child.id(), node.cluster_port)
            {
                return Ok(());
            }
            let exited = !matches!(child.try_wait(), Ok(None));
            if exited || Instant::now() >= deadline {
                return Err(format!(
                    "nats node {} did not listen on {} and {}{}; log:\n{}",
                    node.name,
                    node.port,
                    node.cluster_port,
                    if exited {
                        " (it exited)"
                    } else {
                        " within 20 s"
                    },
                    node.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until JetStream answers on the cluster with a stream of 3
    /// replicas (a metadata leader is elected), creating and deleting a
    /// probe stream.
    pub async fn wait_jetstream(&self) {
        let url = self.url();
        let servers: Vec<&str> = url.split(',').collect();
        let client = async_nats::connect(servers.as_slice())
            .await
            .expect("connect");
        let js = async_nats::jetstream::new(client);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let created = js
                .get_or_create_stream(async_nats::jetstream::stream::Config {
                    name: "PROBE".into(),
                    subjects: vec!["probe.>".into()],
                    num_replicas: 3,
                    ..Default::default()
                })
                .await;
            if created.is_ok() {
                let _ = js.delete_stream("PROBE").await;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "JetStream not ready on the cluster: {created:?}\n{}",
                self.nodes[0].log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
