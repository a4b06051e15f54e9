//! Members as nodes in this process (each with its own media driver), over UDP on loopback,
//! with a client: commands are applied once, the leader's loss is survived, a restart recovers.

use std::path::Path;
use std::time::{Duration, Instant};

use tern_cluster::client::{ClusterClient, ClusterClientConfig};
use tern_cluster::kv::{Command, decode_response};
use tern_cluster::node::{Members, Node, NodeConfig};
use tern_engine::client::{ClientConfig, Tern};
use tern_engine::driver::{DriverConfig, MediaDriver};

fn config(id: u32, members: &Members, root: &Path) -> NodeConfig {
    let mut config = NodeConfig::new(id, members.clone(), root.join(format!("member-{id}")));
    config.driver_dir = root.join(format!("driver-{id}"));
    config
}

fn client_driver(root: &Path) -> (MediaDriver, Tern) {
    let dir = root.join("client-driver");
    let driver = MediaDriver::launch(DriverConfig {
        dir: dir.clone(),
        ..DriverConfig::default()
    })
    .unwrap();
    let tern = Tern::connect(ClientConfig {
        dir,
        ..ClientConfig::default()
    })
    .unwrap();
    (driver, tern)
}

fn add(client: &mut ClusterClient, key: u64, delta: u64) -> u64 {
    let reply = client
        .call(
            &Command::Add { key, delta }.encode(0),
            Duration::from_secs(30),
        )
        .expect("an answer within 30 s");
    decode_response(&reply.payload).expect("a KV response").1
}

#[test]
fn three_members_apply_commands_once_survive_the_leaders_loss_and_recover_on_restart() {
    let root = tempfile::tempdir().unwrap();
    let members = Members::free_loopback(3).unwrap();
    let mut nodes: Vec<Option<Node>> = (0..3)
        .map(|id| Some(Node::launch(config(id, &members, root.path())).unwrap()))
        .collect();
    let (_driver, tern) = client_driver(root.path());
    let mut client =
        ClusterClient::connect(&tern, ClusterClientConfig::new(members.clone()).unwrap()).unwrap();
    for expected in 1..=50 {
        assert_eq!(add(&mut client, 7, 1), expected);
    }
    // Many sessions over one client's streams, each with a request in flight.
    let mut many = ClusterClient::connect_sessions(
        &tern,
        ClusterClientConfig::new(members.clone()).unwrap(),
        16,
    )
    .unwrap();
    let mut left = [10u32; 16];
    let started = Instant::now();
    let add_on = |index: usize| {
        Command::Add {
            key: 100 + index as u64,
            delta: 1,
        }
        .encode(0)
    };
    for index in 0..16 {
        many.send_on(index, &add_on(index)).unwrap();
    }
    while left.iter().any(|&n| n > 0) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "sessions answered: {left:?}"
        );
        if let Some((index, _)) = many.poll_any() {
            left[index] -= 1;
            if left[index] > 0 {
                many.send_on(index, &add_on(index)).unwrap();
            }
        }
    }
    assert!(matches!(
        many.send_on(16, b"x"),
        Err(tern_cluster::client::ClusterClientError::Sessions(16))
    ));
    for key in 100..116 {
        let reply = client
            .call(&Command::Get { key }.encode(0), Duration::from_secs(30))
            .unwrap();
        assert_eq!(decode_response(&reply.payload).unwrap().1, 10, "key {key}");
    }
    // Stop the member the client found leading: the rest elect a leader, the client follows.
    let leader = client.target();
    nodes[usize::try_from(leader).unwrap()]
        .take()
        .unwrap()
        .close();
    let started = Instant::now();
    assert_eq!(add(&mut client, 7, 1), 51);
    let pause = started.elapsed();
    assert_ne!(client.target(), leader);
    for expected in 52..=60 {
        assert_eq!(add(&mut client, 7, 1), expected);
    }
    // The stopped member comes back (and takes part again); then the whole cluster restarts.
    // Catching up is checked member by member in tools/tests/cluster_processes.rs.
    nodes[usize::try_from(leader).unwrap()] =
        Some(Node::launch(config(leader, &members, root.path())).unwrap());
    assert_eq!(add(&mut client, 7, 1), 61);
    for node in &mut nodes {
        node.take().unwrap().close();
    }
    for (id, node) in (0..3).zip(nodes.iter_mut()) {
        *node = Some(Node::launch(config(id, &members, root.path())).unwrap());
    }
    assert_eq!(
        add(&mut client, 7, 1),
        62,
        "the state survived a whole-cluster restart"
    );
    let reply = client
        .call(&Command::Get { key: 7 }.encode(0), Duration::from_secs(30))
        .unwrap();
    assert_eq!(decode_response(&reply.payload).unwrap().1, 62);
    eprintln!("failover pause {pause:?}, retries {}", client.retries());
    for node in nodes.iter().flatten() {
        assert_eq!(node.failure(), None);
    }
}
