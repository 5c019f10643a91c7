//! s3cmd, a client people run, through the `s3tap` binary (embedded store):
//! make a bucket, put, list, get and delete an object.
#![cfg(feature = "proxy")]

mod support;

use std::ffi::OsStr;

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
    let logs = proxy.logs();
    for operation in ["PUT", "GET", "DELETE"] {
        assert!(logs.contains(&format!("method={operation}")), "{logs}");
    }
}
