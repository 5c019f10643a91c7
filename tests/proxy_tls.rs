//! HTTPS served by the `s3tap` binary itself (`--tls-cert/--tls-key` and
//! `[tls]`), with a certificate the test issues: boto3 and aws-cli complete
//! requests over it, and a client trusting another CA refuses it.
#![cfg(feature = "proxy")]

mod support;

use std::ffi::OsStr;

use support::binary::{test_certificate, S3tapCommand};
use support::clients::{aws_cli_s3_tls, boto3_script_env, Creds};
use support::{random_file, Peers};

#[tokio::test]
async fn boto3_and_aws_cli_over_https_with_tls_flags() {
    let Some(peers) = Peers::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_certificate(dir.path(), "proxy", &["127.0.0.1", "localhost"]);
    let proxy = S3tapCommand::new()
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .start(dir.path());
    assert!(proxy.endpoint.starts_with("https://"), "{}", proxy.endpoint);
    let creds = Creds::new(
        &proxy.banner("access key id"),
        &proxy.banner("secret access key"),
    );
    assert_eq!(proxy.banner("endpoint"), proxy.endpoint);

    let (file, _) = random_file(dir.path(), "payload.bin", 300 * 1024 + 7, 11);
    let out = boto3_script_env(
        peers,
        "boto3_roundtrip.py",
        &[
            proxy.endpoint.as_ref(),
            "tlsbucket".as_ref(),
            "over/https.bin".as_ref(),
            file.as_os_str(),
        ],
        &creds,
        &[("AWS_CA_BUNDLE", ca.as_os_str())],
    )
    .await;
    out.assert_success(&format!("boto3 over HTTPS; log:\n{}", proxy.logs()));
    assert_eq!(out.stdout.trim(), "roundtrip ok");

    let out = aws_cli_s3_tls(
        peers,
        &proxy.endpoint,
        &ca,
        &creds,
        &[
            "cp".as_ref(),
            file.as_os_str(),
            "s3://tlsbucket/cli/copy.bin".as_ref(),
        ],
    )
    .await;
    out.assert_success("aws s3 cp over HTTPS");
    let out = aws_cli_s3_tls(
        peers,
        &proxy.endpoint,
        &ca,
        &creds,
        &["ls".as_ref(), "s3://tlsbucket/cli/".as_ref()],
    )
    .await;
    out.assert_success("aws s3 ls over HTTPS");
    assert!(out.stdout.contains("copy.bin"), "{}", out.stdout);
    let stored = std::fs::read(dir.path().join("data/buckets/tlsbucket/cli/copy.bin")).unwrap();
    assert_eq!(stored, std::fs::read(&file).unwrap());
}

#[tokio::test]
async fn tls_section_is_served_and_a_client_trusting_another_ca_refuses_it() {
    let Some(peers) = Peers::get() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_certificate(dir.path(), "proxy", &["127.0.0.1"]);
    let (other_ca, _, _) = test_certificate(dir.path(), "other", &["127.0.0.1"]);
    let proxy = S3tapCommand::new()
        .config(
            dir.path(),
            &format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                cert.display(),
                key.display()
            ),
        )
        .start(dir.path());
    assert!(proxy.endpoint.starts_with("https://"));
    let creds = Creds::new(
        &proxy.banner("access key id"),
        &proxy.banner("secret access key"),
    );
    let list = |ca: std::path::PathBuf| {
        let creds = creds.clone();
        let endpoint = proxy.endpoint.clone();
        async move {
            boto3_script_env(
                peers,
                "boto3_list_buckets.py",
                &[endpoint.as_ref()],
                &creds,
                &[("AWS_CA_BUNDLE", ca.as_os_str())],
            )
            .await
        }
    };
    let good = list(ca.clone()).await;
    good.assert_success("boto3 list_buckets over HTTPS with the right CA");

    let bad = list(other_ca).await;
    assert!(!bad.success(), "a wrong CA must fail: {}", bad.stdout);
    assert!(
        bad.stderr.contains("SSLError") && bad.stderr.contains("CERTIFICATE_VERIFY_FAILED"),
        "expected a certificate verification error:\n{}",
        bad.stderr
    );

    // Plain HTTP on the HTTPS port gets no S3 answer.
    let out = boto3_script_env(
        peers,
        "boto3_list_buckets.py",
        &[OsStr::new(&proxy.endpoint.replace("https://", "http://"))],
        &creds,
        &[],
    )
    .await;
    assert!(
        !out.success(),
        "plain HTTP must not be served: {}",
        out.stdout
    );
}

/// `curl` against `url` as the given HTTP version (`--http1.1`, `--http2`
/// by ALPN, `--http2-prior-knowledge`), signed with `creds` by curl's own
/// SigV4: what it answered, as "<version> <status>".
fn curl_version_and_status(
    url: &str,
    version: &str,
    creds: &Creds,
    ca: Option<&std::path::Path>,
) -> String {
    let mut command = std::process::Command::new("curl");
    command
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            version,
        ])
        // S3 wants the payload hash; curl signs the header given here.
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .args(["--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
        .arg(format!("{}:{}", creds.access_key, creds.secret_key))
        .arg(url);
    if let Some(ca) = ca {
        command.arg("--cacert").arg(ca);
    }
    let out = command.output().expect("curl (Debian package curl)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// HTTP/2 is served where a client asks for it: by ALPN over TLS, and by
/// the connection preface over plain TCP ("prior knowledge"); HTTP/1.1
/// beside it on the same listener. A signed `ListBuckets` gets its 200 on
/// each.
#[tokio::test]
async fn http2_by_alpn_and_by_prior_knowledge_beside_http1() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_certificate(dir.path(), "proxy", &["127.0.0.1"]);
    for sub in ["tls", "plain"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
    }
    let tls = S3tapCommand::new()
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .start(&dir.path().join("tls"));
    let creds = Creds::new(
        &tls.banner("access key id"),
        &tls.banner("secret access key"),
    );
    let url = format!("{}/", tls.endpoint);
    assert_eq!(
        curl_version_and_status(&url, "--http2", &creds, Some(&ca)),
        "2 200",
        "log:\n{}",
        tls.logs()
    );
    assert_eq!(
        curl_version_and_status(&url, "--http1.1", &creds, Some(&ca)),
        "1.1 200"
    );

    let plain = S3tapCommand::new().start(&dir.path().join("plain"));
    let creds = Creds::new(
        &plain.banner("access key id"),
        &plain.banner("secret access key"),
    );
    let url = format!("{}/", plain.endpoint);
    assert_eq!(
        curl_version_and_status(&url, "--http2-prior-knowledge", &creds, None),
        "2 200",
        "log:\n{}",
        plain.logs()
    );
    assert_eq!(
        curl_version_and_status(&url, "--http1.1", &creds, None),
        "1.1 200"
    );
}
