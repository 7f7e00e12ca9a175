//! The REAPI v2 calls one backend needs, async, on one HTTP/2 channel:
//! ActionCache.GetActionResult, CAS.FindMissingBlobs / BatchUpdateBlobs,
//! ByteStream.Write / Read, Execution.Execute.
//!
//! Blobs are uploaded once per executor (one link): [`Uploads`] remembers
//! what the server has, and a blob another job is uploading right now is
//! waited for, not sent again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream::byte_stream_client::ByteStreamClient;
use bazel_remote_apis::google::bytestream::{ReadRequest, WriteRequest};
use bazel_remote_apis::google::longrunning::operation;
use prost::Message;
use re::action_cache_client::ActionCacheClient;
use re::content_addressable_storage_client::ContentAddressableStorageClient;
use re::execution_client::ExecutionClient;
use tokio::sync::watch;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

use super::action::{Digest, Source};

/// Blobs up to this size go in BatchUpdateBlobs; larger ones by ByteStream.
const BATCH_BLOB_MAX: i64 = 1 << 20;
/// Total size of one BatchUpdateBlobs (servers commonly allow 4 MiB).
const BATCH_TOTAL_MAX: i64 = 2 << 20;
const CHUNK: usize = 1 << 20;
/// For every call but Execute (which takes as long as the compile).
const RPC_TIMEOUT: Duration = Duration::from_secs(120);
/// Until the server has answered once, a call (connecting and the TLS
/// handshake included: the connection is made by the first call) gets
/// this long, and missing it means the service is down. A healthy server
/// answers the first call, a cache lookup, in milliseconds even across
/// the world; a server that accepts connections and never answers would
/// otherwise cost every link HTTP/2's keep-alive timeout (~50 s) before
/// the local fallback. A false verdict only costs local backends.
pub const FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed remote attempt. The job is retried or run locally; it is
/// never a compile error.
#[derive(Debug, Clone)]
pub struct RemoteError {
    pub msg: String,
    /// Worth another attempt (the server or the network had trouble).
    pub retry: bool,
    /// The server lost blobs we thought it had: forget them, re-upload.
    pub blobs_lost: bool,
    /// The service as a whole is unusable (unreachable, refuses us):
    /// later jobs should not try it.
    pub service_down: bool,
}

impl RemoteError {
    pub fn other(msg: impl Into<String>) -> RemoteError {
        RemoteError { msg: msg.into(), retry: true, blobs_lost: false, service_down: false }
    }

    /// The status's message, with the error that caused it when the
    /// message does not already say it (a connection that failed: refused,
    /// or the TLS handshake and why).
    fn status(what: &str, s: &Status) -> RemoteError {
        let mut message = s.message().to_string();
        if let Some(source) = std::error::Error::source(s) {
            let mut root = source;
            while let Some(next) = root.source() {
                root = next;
            }
            if !message.contains(&root.to_string()) {
                let mut next = Some(source);
                while let Some(e) = next {
                    let text = e.to_string();
                    if !message.contains(&text) {
                        message = if message.is_empty() { text } else { format!("{message}: {text}") };
                    }
                    next = e.source();
                }
            }
        }
        // rustls's words for the two likeliest mistakes.
        if message.contains("UnknownIssuer") {
            message.push_str(" (no CA in the system's store or KDTHIN_REMOTE_CA signed the server's certificate)");
        } else if message.contains("InvalidContentType") {
            message.push_str(" (the server does not answer in TLS: grpc:// for a server without TLS?)");
        }
        Self::code(what, s.code(), &message)
    }

    fn code(what: &str, code: Code, message: &str) -> RemoteError {
        let msg = if message.is_empty() { format!("{what}: {code:?}") } else { format!("{what}: {code:?}: {message}") };
        let retry = matches!(
            code,
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::ResourceExhausted
                | Code::Aborted
                | Code::Internal
                | Code::Unknown
                | Code::Cancelled
                | Code::FailedPrecondition
                | Code::NotFound
        );
        let service_down =
            matches!(code, Code::Unavailable | Code::Unauthenticated | Code::PermissionDenied | Code::Unimplemented);
        RemoteError { msg, retry, blobs_lost: matches!(code, Code::FailedPrecondition | Code::NotFound), service_down }
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

/// Extra headers on every call (authorization, routing).
#[derive(Clone)]
pub struct Headers(Arc<Vec<(AsciiMetadataKey, AsciiMetadataValue)>>);

impl Headers {
    pub fn new(pairs: &[(String, String)]) -> Result<Headers, String> {
        let mut out = Vec::new();
        for (k, v) in pairs {
            let key = AsciiMetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                .map_err(|_| format!("bad header name {k:?}"))?;
            let value = AsciiMetadataValue::try_from(v.as_str()).map_err(|_| format!("bad value for header {k:?}"))?;
            out.push((key, value));
        }
        Ok(Headers(Arc::new(out)))
    }
}

impl tonic::service::Interceptor for Headers {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        for (k, v) in self.0.iter() {
            req.metadata_mut().append(k.clone(), v.clone());
        }
        Ok(req)
    }
}

type Svc = InterceptedService<Channel, Headers>;

/// What the server is known to have, or is being sent by some job.
#[derive(Default)]
pub struct Uploads {
    state: Mutex<HashMap<String, State>>,
    pub uploaded_blobs: AtomicU64,
    pub uploaded_bytes: AtomicU64,
}

#[derive(Clone)]
enum State {
    Present,
    /// `Some(true)` once uploaded, `Some(false)` (or a dropped sender) if
    /// that failed.
    Uploading(watch::Receiver<Option<bool>>),
}

fn key(d: &Digest) -> String {
    format!("{}/{}", d.hash, d.size_bytes)
}

impl Uploads {
    /// After the server said it lost blobs.
    pub fn forget(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, s| matches!(s, State::Uploading(_)));
    }
}

pub struct Client {
    instance: String,
    cas: ContentAddressableStorageClient<Svc>,
    ac: ActionCacheClient<Svc>,
    exec: ExecutionClient<Svc>,
    bs: ByteStreamClient<Svc>,
    pub uploads: Uploads,
    seq: AtomicU64,
    /// Some call got an answer (of any kind) on this client.
    answered: AtomicBool,
}

/// The result of a finished action.
pub struct Finished {
    pub result: re::ActionResult,
    /// Served from the action cache (ours or the server's).
    pub cached: bool,
}

impl Client {
    /// Connects lazily: nothing is sent before the first call, so a
    /// server that is down shows up as failed calls (and local fallback).
    /// Must be called inside the runtime. `tls` for an `https://` endpoint.
    pub fn new(
        endpoint: &str,
        tls: Option<ClientTlsConfig>,
        instance: &str,
        headers: Headers,
    ) -> Result<Client, String> {
        let mut ep = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| format!("{endpoint}: {e}"))?
            .connect_timeout(FIRST_ANSWER_TIMEOUT)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(false);
        if let Some(tls) = tls {
            ep = ep.tls_config(tls).map_err(|e| format!("{endpoint}: TLS: {}", error_chain(&e)))?;
        }
        let ch = ep.connect_lazy();
        let max = 256 << 20;
        Ok(Client {
            instance: instance.to_string(),
            cas: ContentAddressableStorageClient::with_interceptor(ch.clone(), headers.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            ac: ActionCacheClient::with_interceptor(ch.clone(), headers.clone()).max_decoding_message_size(max),
            exec: ExecutionClient::with_interceptor(ch.clone(), headers.clone()).max_decoding_message_size(max),
            bs: ByteStreamClient::with_interceptor(ch, headers).max_decoding_message_size(max),
            uploads: Uploads::default(),
            seq: AtomicU64::new(0),
            answered: AtomicBool::new(false),
        })
    }

    fn resource(&self, tail: &str) -> String {
        if self.instance.is_empty() {
            tail.to_string()
        } else {
            format!("{}/{tail}", self.instance)
        }
    }

    /// A successful cached result, or None (miss, or a cached failure,
    /// which we do not trust: it is executed again).
    pub async fn cached_result(&self, action: &Digest) -> Result<Option<re::ActionResult>, RemoteError> {
        let req = re::GetActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(action.clone()),
            ..Default::default()
        };
        let mut ac = self.ac.clone();
        match self.timeout(ac.get_action_result(req)).await? {
            Ok(r) => {
                let r = r.into_inner();
                Ok((r.exit_code == 0).then_some(r))
            }
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(RemoteError::status("GetActionResult", &s)),
        }
    }

    /// Makes sure the server has every blob, uploading what it lacks.
    pub async fn ensure_blobs(&self, blobs: &[(Digest, Source)]) -> Result<(), RemoteError> {
        let mut wait = Vec::new();
        let mut unknown = Vec::new();
        {
            let st = self.uploads.state.lock().unwrap_or_else(|e| e.into_inner());
            for (d, s) in blobs {
                match st.get(&key(d)) {
                    Some(State::Present) => {}
                    Some(State::Uploading(rx)) => wait.push(rx.clone()),
                    None if d.size_bytes == 0 => {}
                    None => unknown.push((d, s)),
                }
            }
        }
        let mut mine = Vec::new();
        let mut senders = Vec::new();
        if !unknown.is_empty() {
            let req = re::FindMissingBlobsRequest {
                instance_name: self.instance.clone(),
                blob_digests: unknown.iter().map(|(d, _)| (*d).clone()).collect(),
                ..Default::default()
            };
            let missing = self
                .timeout(self.cas.clone().find_missing_blobs(req))
                .await?
                .map_err(|s| RemoteError::status("FindMissingBlobs", &s))?
                .into_inner()
                .missing_blob_digests;
            let missing: std::collections::HashSet<String> = missing.iter().map(key).collect();
            let mut st = self.uploads.state.lock().unwrap_or_else(|e| e.into_inner());
            for (d, s) in unknown {
                let k = key(d);
                if !missing.contains(&k) {
                    st.insert(k, State::Present);
                    continue;
                }
                match st.get(&k) {
                    Some(State::Present) => {}
                    Some(State::Uploading(rx)) => wait.push(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        st.insert(k.clone(), State::Uploading(rx));
                        senders.push((k, tx));
                        mine.push((d, s));
                    }
                }
            }
        }
        let result = self.upload(&mine).await;
        {
            let mut st = self.uploads.state.lock().unwrap_or_else(|e| e.into_inner());
            for (k, tx) in senders {
                if result.is_ok() {
                    st.insert(k, State::Present);
                } else {
                    st.remove(&k);
                }
                let _ = tx.send(Some(result.is_ok()));
            }
        }
        result?;
        for mut rx in wait {
            let ok = rx.wait_for(|v| v.is_some()).await.map(|v| *v == Some(true)).unwrap_or(false);
            if !ok {
                return Err(RemoteError::other("a blob another backend was uploading did not arrive"));
            }
        }
        Ok(())
    }

    async fn upload(&self, blobs: &[(&Digest, &Source)]) -> Result<(), RemoteError> {
        let mut batch: Vec<re::batch_update_blobs_request::Request> = Vec::new();
        let mut batch_size = 0;
        for (d, s) in blobs {
            let data = read_source(s, d)?;
            self.uploads.uploaded_blobs.fetch_add(1, Ordering::Relaxed);
            self.uploads.uploaded_bytes.fetch_add(d.size_bytes as u64, Ordering::Relaxed);
            if d.size_bytes > BATCH_BLOB_MAX {
                self.write(d, data).await?;
                continue;
            }
            if batch_size + d.size_bytes > BATCH_TOTAL_MAX && !batch.is_empty() {
                self.batch_update(std::mem::take(&mut batch)).await?;
                batch_size = 0;
            }
            batch_size += d.size_bytes;
            batch.push(re::batch_update_blobs_request::Request {
                digest: Some((*d).clone()),
                data: data.to_vec(),
                compressor: 0,
            });
        }
        if !batch.is_empty() {
            self.batch_update(batch).await?;
        }
        Ok(())
    }

    async fn batch_update(&self, requests: Vec<re::batch_update_blobs_request::Request>) -> Result<(), RemoteError> {
        let req = re::BatchUpdateBlobsRequest { instance_name: self.instance.clone(), requests, ..Default::default() };
        let resp = self
            .timeout(self.cas.clone().batch_update_blobs(req))
            .await?
            .map_err(|s| RemoteError::status("BatchUpdateBlobs", &s))?
            .into_inner();
        for r in resp.responses {
            if let Some(s) = r.status.filter(|s| s.code != 0) {
                return Err(RemoteError::code("BatchUpdateBlobs", Code::from_i32(s.code), &s.message));
            }
        }
        Ok(())
    }

    async fn write(&self, d: &Digest, data: Arc<Vec<u8>>) -> Result<(), RemoteError> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = self.resource(&format!("uploads/{}/blobs/{}/{}", uuid(n), d.hash, d.size_bytes));
        let chunks: Vec<WriteRequest> = {
            let mut v = Vec::new();
            let mut off = 0;
            loop {
                let end = (off + CHUNK).min(data.len());
                v.push(WriteRequest {
                    resource_name: if off == 0 { name.clone() } else { String::new() },
                    write_offset: off as i64,
                    finish_write: end == data.len(),
                    data: data[off..end].to_vec(),
                });
                off = end;
                if off == data.len() {
                    break;
                }
            }
            v
        };
        let resp = self
            .timeout(self.bs.clone().write(tokio_stream::iter(chunks)))
            .await?
            .map_err(|s| RemoteError::status("ByteStream.Write", &s))?;
        let committed = resp.into_inner().committed_size;
        if committed != d.size_bytes && committed != -1 {
            return Err(RemoteError::other(format!(
                "ByteStream.Write: committed {committed} of {} bytes",
                d.size_bytes
            )));
        }
        Ok(())
    }

    pub async fn read(&self, d: &Digest) -> Result<Vec<u8>, RemoteError> {
        if d.size_bytes == 0 {
            return Ok(Vec::new());
        }
        let req = ReadRequest {
            resource_name: self.resource(&format!("blobs/{}/{}", d.hash, d.size_bytes)),
            read_offset: 0,
            read_limit: 0,
        };
        let fut = async {
            let mut stream = self.bs.clone().read(req).await?.into_inner();
            let mut data = Vec::with_capacity(d.size_bytes as usize);
            while let Some(chunk) = stream.message().await? {
                data.extend_from_slice(&chunk.data);
            }
            Ok::<_, Status>(data)
        };
        let data = self.timeout(fut).await?.map_err(|s| RemoteError::status("ByteStream.Read", &s))?;
        if super::action::digest_of(&data) != *d {
            return Err(RemoteError::other(format!("ByteStream.Read: blob {} arrived corrupt", d.hash)));
        }
        Ok(data)
    }

    /// Execute, following the operation stream to its end.
    pub async fn execute(&self, action: &Digest, skip_cache_lookup: bool) -> Result<Finished, RemoteError> {
        let req = re::ExecuteRequest {
            instance_name: self.instance.clone(),
            skip_cache_lookup,
            action_digest: Some(action.clone()),
            ..Default::default()
        };
        let mut stream =
            self.exec.clone().execute(req).await.map_err(|s| RemoteError::status("Execute", &s))?.into_inner();
        loop {
            let op = match stream.message().await {
                Ok(Some(op)) => op,
                Ok(None) => {
                    return Err(RemoteError::other("Execute: the operation stream ended before the action finished"))
                }
                Err(s) => return Err(RemoteError::status("Execute", &s)),
            };
            if !op.done {
                continue;
            }
            let any = match op.result {
                Some(operation::Result::Response(any)) => any,
                Some(operation::Result::Error(s)) => {
                    return Err(RemoteError::code("Execute", Code::from_i32(s.code), &s.message))
                }
                None => return Err(RemoteError::other("Execute: finished without a result")),
            };
            let resp = re::ExecuteResponse::decode(any.value.as_slice())
                .map_err(|e| RemoteError::other(format!("Execute: cannot decode the response: {e}")))?;
            if let Some(s) = resp.status.as_ref().filter(|s| s.code != 0) {
                return Err(RemoteError::code("Execute", Code::from_i32(s.code), &s.message));
            }
            let result = resp.result.ok_or_else(|| RemoteError::other("Execute: no ActionResult"))?;
            return Ok(Finished { result, cached: resp.cached_result });
        }
    }
}

/// An error and its sources, `: `-separated, each said once (wrappers
/// often repeat their source's text).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
        next = s.source();
    }
    out
}

impl Client {
    /// Bounds a call: [`FIRST_ANSWER_TIMEOUT`] until the server answered
    /// one, then [`RPC_TIMEOUT`]. No answer in time: the service is down.
    async fn timeout<T>(&self, fut: impl std::future::Future<Output = T>) -> Result<T, RemoteError> {
        let limit = if self.answered.load(Ordering::Relaxed) { RPC_TIMEOUT } else { FIRST_ANSWER_TIMEOUT };
        let v = tokio::time::timeout(limit, fut).await.map_err(|_| RemoteError {
            msg: format!("no answer in {}s", limit.as_secs()),
            retry: true,
            blobs_lost: false,
            service_down: true,
        })?;
        self.answered.store(true, Ordering::Relaxed);
        Ok(v)
    }
}

fn read_source(s: &Source, d: &Digest) -> Result<Arc<Vec<u8>>, RemoteError> {
    match s {
        Source::Bytes(b) => Ok(b.clone()),
        Source::File(p) => {
            let data = std::fs::read(p).map_err(|e| RemoteError {
                msg: format!("{}: {e}", p.display()),
                retry: false,
                blobs_lost: false,
                service_down: false,
            })?;
            if data.len() as i64 != d.size_bytes {
                return Err(RemoteError {
                    msg: format!("{}: changed during the link", p.display()),
                    retry: false,
                    blobs_lost: false,
                    service_down: false,
                });
            }
            Ok(Arc::new(data))
        }
    }
}

/// A version-4-shaped UUID for an upload's resource name: unique per
/// process (pid, time, sequence), which is all the server needs.
fn uuid(seq: u64) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let a = t ^ (u64::from(std::process::id()) << 32);
    let b = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t.rotate_left(17);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        (a & 0xfff) as u16,
        0x8000 | ((b >> 48) as u16 & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}
