//! An S3-compatible backing store (AWS S3, MinIO, Ceph RGW, Garage, ...):
//! objects `PREFIX/NAME` in one bucket, named by the policy as
//! `s3://BUCKET/PREFIX`, on the `object_store` crate (retries with backoff,
//! multipart upload, ranged GET, paginated listing, the AWS credential
//! chain). Endpoint, region and credentials come only from the environment
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP=true` for
//! an `http://` endpoint, ...), never from the volume.
//!
//! The engine is thread-based: the store owns a small tokio runtime (two
//! worker threads named `lsvfs-s3`, made once per store) and every call
//! blocks on it.
//!
//! **Never replacing an object.** An object up to [`PART_SIZE`] goes up in
//! one PUT with `If-None-Match: *` (`PutMode::Create`): the server refuses
//! it, atomically, when the name exists (AWS S3 since 2024, MinIO, moto). A
//! larger one goes up as a multipart upload of [`PART_SIZE`] parts under a
//! staging name (`PREFIX/.staging/NAME.PID-N-RANDOM`, which `list` never
//! returns), and is then copied server-side to its name by a one-part
//! multipart copy whose completion carries `If-None-Match: *`
//! (`copy_if_not_exists` with `S3CopyIfNotExists::Multipart`); the staging
//! object is deleted after. Both ways the object appears whole at once or
//! not at all, and an existing name is refused by the server itself. We
//! do not use HEAD-then-PUT: two writers of one name (a copied volume) could
//! both see it absent and the second would silently replace the first,
//! which is what the trait forbids. A server that does not support
//! conditional writes therefore fails every put with a clear error rather
//! than risking it. (`object_store` 0.14 does not offer a conditional
//! completion of a plain multipart upload, hence the staging copy.)
//!
//! A put cut short by a crash may leave an incomplete multipart upload or a
//! staging object behind (never a partial object under a real name): a
//! bucket lifecycle rule that aborts incomplete uploads and expires
//! `PREFIX/.staging/` after a day cleans them up.
//!
//! Errors name the URL and the object: [`StoreError::NotFound`],
//! [`StoreError::NoBucket`], [`StoreError::Denied`] (401, 403: wrong or
//! missing credentials), [`StoreError::Unreachable`] (no connection after
//! the retries), else [`StoreError::Io`] with the cause.

use super::{BackingStore, StoreError, check_name};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::aws::{S3ConditionalPut, S3CopyIfNotExists};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{BackoffConfig, ClientConfigKey, RetryConfig};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use object_store::{PutPayload, WriteMultipart};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Objects up to this size go up in one PUT; larger ones as multipart
/// uploads of parts of this size (S3 wants at least 5 MiB but the last).
pub const PART_SIZE: usize = 8 << 20;
/// Parts of one upload in flight at once.
const UPLOAD_CONCURRENCY: usize = 4;
/// Where multipart uploads are staged before their conditional copy.
const STAGING_DIR: &str = ".staging";
/// Retries of one request: connection failures, 5xx, 429, timeouts. The
/// archiver retries a failed retire on its own, forever, so these stay short.
const MAX_RETRIES: usize = 5;
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: &str = "5s";

pub struct S3Store {
    client: AmazonS3,
    runtime: tokio::runtime::Runtime,
    bucket: String,
    /// The objects' parent; the root of the bucket when empty.
    prefix: Path,
    url: String,
    endpoint: String,
    next_staging: AtomicU64,
}

impl S3Store {
    /// The store `s3://bucket/prefix`, configured from the environment.
    /// Makes no request: an unreachable store is an error of the first call.
    pub fn open(bucket: &str, prefix: &str) -> Result<S3Store, StoreError> {
        Self::open_with(bucket, prefix, &[])
    }

    /// As [`S3Store::open`], with `config` (object_store's keys, such as
    /// `aws_endpoint` or `aws_access_key_id`) over the environment's.
    pub fn open_with(
        bucket: &str,
        prefix: &str,
        config: &[(&str, &str)],
    ) -> Result<S3Store, StoreError> {
        let url = match prefix {
            "" => format!("s3://{bucket}"),
            p => format!("s3://{bucket}/{p}"),
        };
        let fail = |reason: String| StoreError::Config {
            store: url.clone(),
            reason,
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_copy_if_not_exists(S3CopyIfNotExists::Multipart)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: MAX_RETRIES,
                retry_timeout: RETRY_TIMEOUT,
            })
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                CONNECT_TIMEOUT,
            );
        for (key, value) in config {
            let key: AmazonS3ConfigKey = key
                .parse()
                .map_err(|e| fail(format!("configuration key {key}: {e}")))?;
            builder = builder.with_config(key, *value);
        }
        let endpoint = builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .unwrap_or_else(|| "(AWS S3)".to_string());
        let client = builder.build().map_err(|e| fail(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lsvfs-s3")
            .enable_all()
            .build()
            .map_err(|e| fail(format!("cannot start its runtime: {e}")))?;
        let prefix = Path::parse(prefix).map_err(|e| fail(e.to_string()))?;
        Ok(S3Store {
            client,
            runtime,
            bucket: bucket.to_string(),
            prefix,
            url,
            endpoint,
            next_staging: AtomicU64::new(0),
        })
    }

    fn path(&self, name: &str) -> Result<Path, StoreError> {
        check_name(name)?;
        Ok(self.prefix.clone().join(name))
    }

    fn staging_path(&self, name: &str) -> Result<Path, StoreError> {
        let n = self.next_staging.fetch_add(1, Ordering::Relaxed);
        let random = crate::format::VolumeId::generate()
            .map_err(|e| self.io_error("put", name, e))?
            .to_hex();
        let pid = std::process::id();
        let staging = format!("{name}.{pid}-{n}-{}", &random[..16]);
        Ok(self.prefix.clone().join(STAGING_DIR).join(staging))
    }

    fn io_error(&self, op: &'static str, name: &str, source: std::io::Error) -> StoreError {
        StoreError::Io {
            store: self.url.clone(),
            op,
            name: name.to_string(),
            source,
        }
    }

    /// The store's error for `e`, which `op` of `name` met.
    fn error(&self, op: &'static str, name: &str, e: object_store::Error) -> StoreError {
        let text = chain(&e);
        let name = name.to_string();
        let store = self.url.clone();
        let no_bucket = || StoreError::NoBucket {
            store: self.url.clone(),
            bucket: self.bucket.clone(),
            op,
            name: name.clone(),
        };
        if text.contains("NoSuchBucket") {
            return no_bucket();
        }
        match e {
            object_store::Error::NotFound { .. } => {
                // A HEAD's 404 has no body to tell a missing bucket.
                if !text.contains("NoSuchKey") && self.bucket_missing() {
                    no_bucket()
                } else {
                    StoreError::NotFound { store, name }
                }
            }
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => StoreError::Denied {
                store,
                op,
                name,
                reason: s3_reason(&text).unwrap_or_else(|| status_of(&e)),
            },
            // A listing's refusal comes as a generic error with the status.
            _ if text.contains("status code: 401") || text.contains("status code: 403") => {
                StoreError::Denied {
                    store,
                    op,
                    name,
                    reason: s3_reason(&text).unwrap_or_else(|| status_of(&e)),
                }
            }
            _ if unreachable(&e) => StoreError::Unreachable {
                store,
                endpoint: self.endpoint.clone(),
                op,
                name,
                reason: root_cause(&e),
            },
            _ => StoreError::Io {
                store,
                op,
                name,
                source: std::io::Error::other(text),
            },
        }
    }

    /// Whether listing the staging prefix says the bucket does not exist.
    fn bucket_missing(&self) -> bool {
        let probe = self.prefix.clone().join(STAGING_DIR);
        let listed = self
            .runtime
            .block_on(self.client.list_with_delimiter(Some(&probe)));
        matches!(listed, Err(e) if chain(&e).contains("NoSuchBucket"))
    }

    /// The object's size, as HEAD gives it.
    fn head(&self, name: &str, path: &Path) -> Result<u64, StoreError> {
        self.runtime
            .block_on(self.client.head(path))
            .map(|meta| meta.size)
            .map_err(|e| self.error("stat", name, e))
    }

    fn range_error(&self, name: &str, offset: u64, len: u64, size: u64) -> StoreError {
        StoreError::Range {
            store: self.url.clone(),
            name: name.to_string(),
            offset,
            len,
            size,
        }
    }

    /// Uploads `bytes` in parts under `staging`, then copies the whole
    /// to `path` unless `path` exists.
    fn put_multipart(&self, name: &str, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let staging = self.staging_path(name)?;
        let uploaded = self.runtime.block_on(async {
            let upload = self.client.put_multipart(&staging).await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            for part in bytes.chunks(PART_SIZE) {
                if let Err(e) = writer.wait_for_capacity(UPLOAD_CONCURRENCY).await {
                    let _ = writer.abort().await;
                    return Err(e);
                }
                writer.write(part);
            }
            writer.finish().await
        });
        let copied = uploaded.and_then(|_| {
            self.runtime
                .block_on(self.client.copy_if_not_exists(&staging, path))
        });
        let _ = self.runtime.block_on(self.client.delete(&staging));
        match copied {
            Ok(()) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(self.exists(name)),
            Err(e) => Err(self.error("put", name, e)),
        }
    }

    fn exists(&self, name: &str) -> StoreError {
        StoreError::Exists {
            store: self.url.clone(),
            name: name.to_string(),
        }
    }
}

impl BackingStore for S3Store {
    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(name)?;
        if bytes.len() > PART_SIZE {
            return self.put_multipart(name, &path, bytes);
        }
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let payload = PutPayload::from(bytes.to_vec());
        match self
            .runtime
            .block_on(self.client.put_opts(&path, payload, options))
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(self.exists(name)),
            Err(e) => Err(self.error("put", name, e)),
        }
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(name)?;
        self.runtime
            .block_on(async { self.client.get(&path).await?.bytes().await })
            .map(|b| b.to_vec())
            .map_err(|e| self.error("get", name, e))
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        let path = self.path(name)?;
        let end = offset.checked_add(len);
        // S3 has no empty range, and one past the end is its own error
        // (or a short answer): the size from HEAD decides those.
        let Some(end) = end.filter(|_| len > 0) else {
            let size = self.head(name, &path)?;
            return match end {
                Some(end) if end <= size => Ok(Vec::new()),
                _ => Err(self.range_error(name, offset, len, size)),
            };
        };
        let options = GetOptions {
            range: Some(GetRange::Bounded(offset..end)),
            ..Default::default()
        };
        let got = self
            .runtime
            .block_on(async { self.client.get_opts(&path, options).await?.bytes().await });
        match got {
            Ok(bytes) if bytes.len() as u64 == len => Ok(bytes.to_vec()),
            Ok(_) => {
                let size = self.head(name, &path)?;
                Err(self.range_error(name, offset, len, size))
            }
            Err(e @ object_store::Error::NotFound { .. }) => Err(self.error("get", name, e)),
            Err(e) => match self.head(name, &path) {
                Ok(size) if end > size => Err(self.range_error(name, offset, len, size)),
                _ => Err(self.error("get", name, e)),
            },
        }
    }

    fn size(&self, name: &str) -> Result<u64, StoreError> {
        let path = self.path(name)?;
        self.head(name, &path)
    }

    fn list(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        // Every page of ListObjectsV2 under the prefix; staging objects
        // are a sub-prefix, not objects of this level.
        let listed = self
            .runtime
            .block_on(self.client.list_with_delimiter(prefix))
            .map_err(|e| self.error("list", "objects", e))?;
        let mut out: Vec<(String, u64)> = listed
            .objects
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?.to_string();
                check_name(&name).is_ok().then_some((name, meta.size))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name)?;
        match self.runtime.block_on(self.client.delete(&path)) {
            Ok(()) => Ok(()),
            Err(e) => match self.error("delete", name, e) {
                StoreError::NotFound { .. } => Ok(()),
                e => Err(e),
            },
        }
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}

/// Every message of `e`'s chain, joined on one line: S3's error code is
/// in a body several sources down.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The innermost cause, such as "Connection refused (os error 111)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(c) = last.source() {
        last = c;
    }
    last.to_string()
}

/// Whether `e` is a failure to connect (or a connection that timed out).
fn unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(http) = c.downcast_ref::<HttpError>() {
            return matches!(http.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout);
        }
        cause = c.source();
    }
    false
}

/// "Code: Message" from an S3 error body in `text`, if there is one.
fn s3_reason(text: &str) -> Option<String> {
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let start = text.find(&open)? + open.len();
        let len = text[start..].find(&format!("</{t}>"))?;
        Some(text[start..start + len].to_string())
    };
    let code = tag("Code")?;
    Some(match tag("Message") {
        Some(message) => format!("{code}: {message}"),
        None => code,
    })
}

/// The HTTP status of `e`, for an error without a body (HEAD).
fn status_of(e: &object_store::Error) -> String {
    match e {
        object_store::Error::Unauthenticated { .. } => "401 Unauthorized".into(),
        _ => "403 Forbidden".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_bodies_give_code_and_message() {
        let body = "Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?>\
            <Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided \
            does not exist in our records.</Message></Error>";
        assert_eq!(
            s3_reason(body).unwrap(),
            "InvalidAccessKeyId: The AWS Access Key Id you provided does not exist in our records."
        );
        assert_eq!(s3_reason("no body"), None);
    }

    #[test]
    fn urls_name_bucket_and_prefix() {
        let creds = [
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
            ("aws_endpoint", "http://127.0.0.1:1"),
            ("aws_allow_http", "true"),
        ];
        let s = S3Store::open_with("bucket", "a/b", &creds).unwrap();
        assert_eq!(s.describe(), "s3://bucket/a/b");
        assert_eq!(s.path("x.lsa").unwrap().as_ref(), "a/b/x.lsa");
        let s = S3Store::open_with("bucket", "", &creds).unwrap();
        assert_eq!(s.describe(), "s3://bucket");
        assert_eq!(s.path("x.lsa").unwrap().as_ref(), "x.lsa");
        let e = S3Store::open_with("bucket", "", &[("no_such_key", "1")])
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("cannot use backing store s3://bucket: "),
            "{e}"
        );
    }
}
