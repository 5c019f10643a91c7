//! Reading and rewriting the upstream's JSON answers: the URLs in
//! `b2_authorize_account` (v2's flat shape and v3+'s `apiInfo.storageApi`)
//! and the `uploadUrl` of `b2_get_upload_url` / `b2_get_upload_part_url`
//! are replaced by the proxy's, and what routing needs is taken out.

use serde_json::Value;

use super::state::{Account, Routes, UploadKind, UploadTarget};

/// The path prefix of the upload URLs the proxy hands out; the id that
/// follows names the upstream upload URL in [`Routes`].
pub(crate) const UPLOAD_PATH: &str = "/b2api/s3tap/upload/";

/// From an authorize answer: the token and the account's upstream URLs;
/// the answer's `apiUrl`, `downloadUrl` and `s3ApiUrl` now point at `public`.
/// `None` when the answer lacks a token or an `apiUrl`.
pub(crate) fn rewrite_authorize(
    answer: &mut Value,
    public: &str,
    key_id: Option<String>,
    routes: &Routes,
) -> Option<(String, Account)> {
    let token = answer.get("authorizationToken")?.as_str()?.to_owned();
    // v3 and later nest the storage API's URLs; v1 and v2 have them at the
    // top. Both are rewritten wherever they are.
    let storage = if answer.pointer("/apiInfo/storageApi").is_some() {
        answer.pointer_mut("/apiInfo/storageApi")?
    } else {
        &mut *answer
    };
    let api_url = storage.get("apiUrl")?.as_str()?.to_owned();
    let download_url = storage
        .get("downloadUrl")
        .and_then(Value::as_str)
        .unwrap_or(&api_url)
        .to_owned();
    for field in ["apiUrl", "downloadUrl", "s3ApiUrl"] {
        if let Some(value) = storage.get_mut(field) {
            if value.is_string() {
                *value = Value::String(public.to_owned());
            }
        }
    }
    learn_allowed_buckets(storage.get("allowed"), routes);
    Some((
        token,
        Account {
            api_url,
            download_url,
            key_id,
        },
    ))
}

/// Bucket names from `allowed` (v3+: `buckets: [{id, name}]`; v2:
/// `bucketId`/`bucketName`).
fn learn_allowed_buckets(allowed: Option<&Value>, routes: &Routes) {
    let Some(allowed) = allowed else { return };
    if let Some(buckets) = allowed.get("buckets").and_then(Value::as_array) {
        for bucket in buckets {
            if let (Some(id), Some(name)) = (
                bucket.get("id").and_then(Value::as_str),
                bucket.get("name").and_then(Value::as_str),
            ) {
                routes.remember_bucket(id, name);
            }
        }
    }
    if let (Some(id), Some(name)) = (
        allowed.get("bucketId").and_then(Value::as_str),
        allowed.get("bucketName").and_then(Value::as_str),
    ) {
        routes.remember_bucket(id, name);
    }
}

/// Bucket names from `b2_list_buckets` (`buckets: [...]`) or a single
/// bucket (`b2_create_bucket`, `b2_update_bucket`).
pub(crate) fn learn_buckets(answer: &Value, routes: &Routes) {
    let one = |bucket: &Value| {
        if let (Some(id), Some(name)) = (
            bucket.get("bucketId").and_then(Value::as_str),
            bucket.get("bucketName").and_then(Value::as_str),
        ) {
            routes.remember_bucket(id, name);
        }
    };
    match answer.get("buckets").and_then(Value::as_array) {
        Some(buckets) => buckets.iter().for_each(one),
        None => one(answer),
    }
}

/// Replaces `uploadUrl` with the proxy's own and records where it goes.
/// `false` when the answer has no usable `uploadUrl`. `request` is the
/// call's JSON, for the file id when the answer lacks it (b2sdk's simulator
/// omits it; B2 sends it).
pub(crate) fn rewrite_upload_url(
    answer: &mut Value,
    request: Option<&Value>,
    part: bool,
    public: &str,
    key_id: Option<String>,
    routes: &Routes,
) -> bool {
    let Some(url) = answer
        .get("uploadUrl")
        .and_then(Value::as_str)
        .and_then(|u| u.parse::<http::Uri>().ok())
    else {
        return false;
    };
    if url.scheme().is_none() || url.authority().is_none() {
        return false;
    }
    let kind = if part {
        let file_id = answer
            .get("fileId")
            .or_else(|| request?.get("fileId"))
            .and_then(Value::as_str);
        match file_id {
            Some(file_id) => UploadKind::Part {
                file_id: file_id.to_owned(),
            },
            None => return false,
        }
    } else {
        match answer.get("bucketId").and_then(Value::as_str) {
            Some(bucket_id) => UploadKind::File {
                bucket_id: bucket_id.to_owned(),
            },
            None => return false,
        }
    };
    let id = routes.remember_upload(UploadTarget { url, kind, key_id });
    answer["uploadUrl"] = Value::String(format!("{public}{UPLOAD_PATH}{id}"));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_v2_answer_has_its_urls_replaced() {
        let routes = Routes::new(8, 8, 8);
        let mut answer = json!({
            "accountId": "a1",
            "authorizationToken": "tok",
            "apiUrl": "https://api001.example",
            "downloadUrl": "https://f001.example",
            "s3ApiUrl": "https://s3.example",
            "allowed": {"bucketId": "b1", "bucketName": "photos", "capabilities": []},
        });
        let (token, account) =
            rewrite_authorize(&mut answer, "http://proxy:1", Some("k".into()), &routes).unwrap();
        assert_eq!(token, "tok");
        assert_eq!(account.api_url, "https://api001.example");
        assert_eq!(account.download_url, "https://f001.example");
        for field in ["apiUrl", "downloadUrl", "s3ApiUrl"] {
            assert_eq!(answer[field], "http://proxy:1", "{field}");
        }
        assert_eq!(routes.bucket_name("b1").as_deref(), Some("photos"));
    }

    #[test]
    fn a_v3_answer_has_its_nested_urls_replaced() {
        let routes = Routes::new(8, 8, 8);
        let mut answer = json!({
            "accountId": "a1",
            "authorizationToken": "tok",
            "apiInfo": {"storageApi": {
                "apiUrl": "https://api001.example",
                "downloadUrl": "https://f001.example",
                "s3ApiUrl": "https://s3.example",
                "allowed": {"buckets": [{"id": "b1", "name": "photos"}]},
            }},
        });
        rewrite_authorize(&mut answer, "http://proxy:1", None, &routes).unwrap();
        let text = answer.to_string();
        assert!(!text.contains("example"), "{text}");
        assert_eq!(routes.bucket_name("b1").as_deref(), Some("photos"));
    }

    #[test]
    fn upload_urls_point_at_the_proxy() {
        let routes = Routes::new(8, 8, 8);
        let mut answer = json!({
            "bucketId": "b1",
            "uploadUrl": "https://pod-1.example/b2api/v2/b2_upload_file/b1/x",
            "authorizationToken": "up",
        });
        assert!(rewrite_upload_url(
            &mut answer,
            None,
            false,
            "http://p",
            None,
            &routes
        ));
        let url = answer["uploadUrl"].as_str().unwrap();
        let id = url.strip_prefix("http://p/b2api/s3tap/upload/").unwrap();
        let target = routes.upload(id).unwrap();
        assert_eq!(target.url.host(), Some("pod-1.example"));
        assert!(matches!(target.kind, UploadKind::File { ref bucket_id } if bucket_id == "b1"));
    }
}
