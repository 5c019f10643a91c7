//! Virtual-hosted buckets through the `s3tap` binary on both sides: clients
//! address `bucket.localhost` (`[listen] virtual_host_suffix`), and the proxy
//! addresses the upstream the same way (`[upstream] addressing = "virtual"`),
//! with boto3 (`addressing_style: virtual`) and the AWS JS SDK v3. The
//! upstream is s3s-fs with `--domain localhost`, behind a byte-for-byte TCP
//! relay that records what it was sent, so the test sees the Host headers
//! the upstream received.
#![cfg(feature = "proxy")]

mod support;

use std::sync::{Arc, Mutex};

use support::binary::S3tapCommand;
use support::clients::{boto3_script_env, node_script, Creds};
use support::upstreams::{S3sFs, UpstreamPeer};
use support::{random_file, Peers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CLIENT_KEY: &str = "VHOSTCLIENTKEY";
const CLIENT_SECRET: &str = "vhost-client-secret";

/// Relays every connection on a loopback port to `target`, keeping a copy
/// of all bytes sent towards it.
fn recording_relay(listener: TcpListener, target: std::net::SocketAddr) -> Arc<Mutex<Vec<u8>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let Ok(upstream) = TcpStream::connect(target).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut upstream_read, mut upstream_write) = upstream.into_split();
                let up = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                        if upstream_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = upstream_write.shutdown().await;
                };
                let down = async move {
                    let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
                    let _ = client_write.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    seen
}

/// The `Host` header of every request head in the relayed bytes.
fn host_headers(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split("\r\n")
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("host")
                .then(|| value.trim().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn boto3_and_the_js_sdk_with_virtual_hosted_buckets_on_both_sides() {
    let Some(peers) = Peers::get() else { return };
    let upstream_creds = Creds::new("VHOSTUPSTREAMKEY", "vhost-upstream-secret");
    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_port = relay.local_addr().unwrap().port();
    // s3s-fs takes `bucket.localhost:PORT` Host headers as virtual-hosted
    // buckets (its domain includes the port it is addressed with).
    let domain = format!("localhost:{relay_port}");
    let Some(s3s) = S3sFs::start_with_args(&upstream_creds, &["--domain", &domain]).await else {
        return;
    };
    let s3s_addr = s3s
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let relayed = recording_relay(relay, s3s_addr);

    let dir = tempfile::tempdir().unwrap();
    let proxy = S3tapCommand::new()
        .config(
            dir.path(),
            &format!(
                r#"
[listen]
virtual_host_suffix = "localhost"

[upstream]
endpoint = "http://localhost:{relay_port}"
addressing = "virtual"
credentials = "fixed"
access_key_id = "{up_key}"
secret_access_key = "{up_secret}"

[[clients]]
access_key_id = "{CLIENT_KEY}"
secret_access_key = "{CLIENT_SECRET}"
"#,
                up_key = upstream_creds.access_key,
                up_secret = upstream_creds.secret_key,
            ),
        )
        .start(dir.path());
    // Clients name the proxy `localhost`, so `bucket.localhost:PORT` is its
    // virtual-hosted form.
    let endpoint = format!("http://localhost:{}", proxy.addr.port());
    let creds = Creds::new(CLIENT_KEY, CLIENT_SECRET);

    let (file, data) = random_file(dir.path(), "payload.bin", 200 * 1024 + 3, 21);
    let out = boto3_script_env(
        peers,
        "boto3_roundtrip.py",
        &[
            endpoint.as_ref(),
            "vhost-boto3".as_ref(),
            "dir/object.bin".as_ref(),
            file.as_os_str(),
        ],
        &creds,
        &[
            ("S3TAP_ADDRESSING", "virtual".as_ref()),
            ("S3TAP_RESOLVE_LOCALHOST", "1".as_ref()),
        ],
    )
    .await;
    out.assert_success(&format!(
        "boto3 virtual-hosted; proxy log:\n{}\ns3s-fs log:\n{}",
        proxy.logs(),
        s3s.log()
    ));
    assert_eq!(
        std::fs::read(s3s.data_dir().join("vhost-boto3/dir/object.bin")).unwrap(),
        data
    );
    let logs = proxy.logs();
    assert!(
        logs.contains("path=/dir/object.bin"),
        "boto3 must have sent the bucket in the Host header, not the path:\n{logs}"
    );

    let out = node_script(
        peers,
        "js_vhost_roundtrip.mjs",
        &[
            endpoint.as_ref(),
            "vhost-js".as_ref(),
            "from/node.txt".as_ref(),
        ],
        &creds,
    )
    .await;
    out.assert_success(&format!(
        "JS SDK virtual-hosted; proxy log:\n{}",
        proxy.logs()
    ));
    assert_eq!(out.stdout.trim(), "roundtrip ok");
    assert!(s3s.data_dir().join("vhost-js").is_dir());

    // What the upstream was sent: every request names its bucket in Host.
    let hosts = host_headers(&relayed.lock().unwrap());
    for bucket in ["vhost-boto3", "vhost-js"] {
        let expected = format!("{bucket}.localhost:{relay_port}");
        let count = hosts.iter().filter(|h| **h == expected).count();
        // create, put, get, list (and delete for node): at least four each.
        assert!(
            count >= 4,
            "expected requests with Host {expected}, upstream saw {hosts:?}"
        );
    }
    assert!(
        hosts
            .iter()
            .all(|h| h.ends_with(&format!(".localhost:{relay_port}"))),
        "every bucket request goes virtual-hosted upstream: {hosts:?}"
    );
}
