//! s3cmd, a client people run, through the `s3tap` binary (embedded store):
//! make a bucket, put, list, get and delete an object.
#![cfg(feature = "proxy")]

mod support;

use std::ffi::OsStr;
use std::time::Duration;

use support::binary::S3tapCommand;
use support::clients::{s3cmd, Creds};
use support::{random_file, Peers};

#[tokio::test]
async fn s3cmd_put_get_ls_del_round_trip() {
    let Some(peers) = Peers::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let proxy = S3tapCommand::new().start(dir.path());
    let creds = Creds::new(
        &proxy.banner("access key id"),
        &proxy.banner("secret access key"),
    );
    let host = proxy.addr.to_string();
    let (file, data) = random_file(dir.path(), "upload.bin", 150_000, 8);
    let back = dir.path().join("download.bin");
    let run = |args: Vec<std::ffi::OsString>| {
        let creds = creds.clone();
        let host = host.clone();
        async move {
            let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            s3cmd(peers, &host, &creds, &args).await
        }
    };

    run(vec!["mb".into(), "s3://cmdbucket".into()])
        .await
        .assert_success("s3cmd mb");
    run(vec![
        "put".into(),
        file.clone().into(),
        "s3://cmdbucket/dir/object.bin".into(),
    ])
    .await
    .assert_success("s3cmd put");
    assert_eq!(
        std::fs::read(dir.path().join("data/buckets/cmdbucket/dir/object.bin")).unwrap(),
        data
    );
    let listed = run(vec!["ls".into(), "s3://cmdbucket/dir/".into()]).await;
    listed.assert_success("s3cmd ls");
    assert!(
        listed.stdout.contains("150000") && listed.stdout.contains("s3://cmdbucket/dir/object.bin"),
        "{}",
        listed.stdout
    );
    run(vec![
        "get".into(),
        "s3://cmdbucket/dir/object.bin".into(),
        back.clone().into(),
    ])
    .await
    .assert_success("s3cmd get");
    assert_eq!(std::fs::read(&back).unwrap(), data);
    run(vec!["del".into(), "s3://cmdbucket/dir/object.bin".into()])
        .await
        .assert_success("s3cmd del");
    assert!(!dir
        .path()
        .join("data/buckets/cmdbucket/dir/object.bin")
        .exists());
    // No sinks configured: every event is a JSON line on stdout, after the
    // banner.
    assert!(
        proxy.wait_stdout(Duration::from_secs(10), |out| out
            .contains("\"operation\":\"DeleteObject\"")),
        "{}",
        proxy.stdout()
    );
    let stdout = proxy.stdout();
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .skip_while(|l| !l.contains("aws --endpoint-url"))
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let put = events
        .iter()
        .find(|e| e["operation"] == "PutObject" && e["key"] == "dir/object.bin")
        .unwrap_or_else(|| panic!("no PutObject event in:\n{stdout}"));
    assert_eq!(put["bucket"], "cmdbucket");
    assert_eq!(put["status"], 200);
    let logs = proxy.logs();
    for operation in ["PUT", "GET", "DELETE"] {
        assert!(logs.contains(&format!("method={operation}")), "{logs}");
    }
}
