//! The tonic ceiling: a bare tonic server speaking Rigger's method paths.
//!
//! The same fanout as `bench/ceiling_server.py`, on tonic + tokio instead of
//! grpc.aio: AddTask and UpdateTask splice the request's title into a
//! pre-encoded TaskEvent and offer the bytes to every open subscriber stream,
//! each a bounded queue; a stream whose queue is full is ended with
//! RESOURCE_EXHAUSTED. No storage, no filters, no domain objects. The fanout
//! harness drives it exactly as it drives Rigger, so Rigger's figures can be
//! read as a fraction of what a Rust server allows on the same machine.
//!
//! No protoc and no generated code: requests are read with two hand-written
//! prost messages (only the title field), and everything leaves as bytes
//! through a codec that copies them as they are.
//!
//! Run as `rigger-ceiling-tonic grpc --port 0 --buffer N [--db IGNORED]`: the
//! arguments `rig grpc` takes, and the same banner, so the harness's
//! `ServerProcess` starts and health-checks it like Rigger.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::body::BoxBody;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

const SERVICE: &str = "rigger.v1.RiggerService";
/// A batch message carries whatever is queued, up to about this many bytes, so
/// no message outgrows a client's default 4 MiB receive limit.
const BATCH_BYTES: usize = 1 << 20;

// ---------------------------------------------------------------- wire bytes

fn varint(mut value: u64, out: &mut BytesMut) {
    while value > 0x7f {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// A length-delimited field (strings, bytes, embedded messages).
fn field(number: u64, payload: &[u8], out: &mut BytesMut) {
    varint(number << 3 | 2, out);
    varint(payload.len() as u64, out);
    out.put_slice(payload);
}

/// Now as RFC 3339 with microseconds in UTC, the shape of Rigger's timestamps,
/// so the harness's server-timestamp latency means the same for every server.
fn now_rfc3339() -> String {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// Pre-encoded TaskEvent pieces; only the title, timestamp and sequence vary.
struct EventTemplate {
    head: Bytes,      // event_id
    event_type: Bytes, // field 3
    task_id: Bytes,   // Task field 1
    task_rest: Bytes, // status, created_at, updated_at, version
}

impl EventTemplate {
    fn new(event_type: u64, event_id: &str, task_id: &str) -> Self {
        let now = now_rfc3339();
        let mut head = BytesMut::new();
        field(1, event_id.as_bytes(), &mut head);
        let mut kind = BytesMut::new();
        varint(3 << 3, &mut kind);
        varint(event_type, &mut kind);
        let mut id = BytesMut::new();
        field(1, task_id.as_bytes(), &mut id);
        let mut rest = BytesMut::new();
        varint(5 << 3, &mut rest);
        varint(1, &mut rest); // status TODO
        field(10, now.as_bytes(), &mut rest);
        field(11, now.as_bytes(), &mut rest);
        varint(16 << 3, &mut rest);
        varint(1, &mut rest); // version 1
        Self {
            head: head.freeze(),
            event_type: kind.freeze(),
            task_id: id.freeze(),
            task_rest: rest.freeze(),
        }
    }

    /// The full encoded TaskEvent.
    fn encode(&self, title: &[u8], sequence: u64) -> Bytes {
        let mut task = BytesMut::with_capacity(self.task_id.len() + title.len() + 96);
        task.put_slice(&self.task_id);
        field(2, title, &mut task);
        task.put_slice(&self.task_rest);
        let mut out = BytesMut::with_capacity(task.len() + 128);
        out.put_slice(&self.head);
        field(2, now_rfc3339().as_bytes(), &mut out);
        out.put_slice(&self.event_type);
        field(4, &task, &mut out);
        varint(7 << 3, &mut out);
        varint(sequence, &mut out);
        out.freeze()
    }
}

/// AddTaskRequest, reduced to the one field the ceiling reads.
#[derive(Clone, PartialEq, Message)]
struct AddTitle {
    #[prost(bytes = "bytes", tag = "1")]
    title: Bytes,
}

/// UpdateTaskRequest, reduced to the one field the ceiling reads.
#[derive(Clone, PartialEq, Message)]
struct UpdateTitle {
    #[prost(bytes = "bytes", optional, tag = "6")]
    title: Option<Bytes>,
}

/// Requests in and replies out as bytes: nothing is built or parsed on the way.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }
}

// ---------------------------------------------------------------- the hub

struct Subscriber {
    queue: mpsc::Sender<Bytes>,
    overflowed: Arc<AtomicBool>,
}

/// Every open stream; broadcasting is a loop of non-blocking queue offers.
struct Hub {
    buffer: usize,
    // One lock around sequence, encoding and offers, so every stream sees the
    // events in one order even when writers run on several threads.
    streams: Mutex<(u64, HashMap<u64, Subscriber>)>,
    next_id: AtomicU64,
    created: EventTemplate,
    updated: EventTemplate,
    add_reply: Bytes,
    update_reply: Bytes,
}

impl Hub {
    fn new(buffer: usize) -> Self {
        // AddTaskResponse / UpdateTaskResponse { task { id: "ceiling", title: "t" } }
        let mut task = BytesMut::new();
        field(1, b"ceiling", &mut task);
        field(2, b"t", &mut task);
        let mut reply = BytesMut::new();
        field(1, &task, &mut reply);
        let reply = reply.freeze();
        Self {
            buffer,
            streams: Mutex::new((0, HashMap::new())),
            next_id: AtomicU64::new(1),
            created: EventTemplate::new(
                1,
                "0b1d9a4e-6f0c-4c55-9a51-6c1e1f7f1c01",
                "7d3c2b1a-0e9f-4d8c-b7a6-958473625101",
            ),
            updated: EventTemplate::new(
                2,
                "0b1d9a4e-6f0c-4c55-9a51-6c1e1f7f1c02",
                "7d3c2b1a-0e9f-4d8c-b7a6-958473625102",
            ),
            add_reply: reply.clone(),
            update_reply: reply,
        }
    }

    fn broadcast(&self, template: &EventTemplate, title: &[u8]) {
        let mut guard = self.streams.lock().unwrap();
        let (sequence, streams) = &mut *guard;
        *sequence += 1;
        let data = template.encode(title, *sequence);
        streams.retain(|_, sub| match sub.queue.try_send(data.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Dropping the sender ends the stream once its queue is read out.
                sub.overflowed.store(true, Ordering::Release);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    fn subscribe(self: &Arc<Self>, batched: bool) -> Feed {
        let (tx, rx) = mpsc::channel(self.buffer.max(1));
        let overflowed = Arc::new(AtomicBool::new(false));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sub = Subscriber { queue: tx, overflowed: overflowed.clone() };
        self.streams.lock().unwrap().1.insert(id, sub);
        Feed { hub: self.clone(), id, rx, overflowed, batched, done: false }
    }
}

/// One subscriber's stream: its queue, read out one message per event or, for
/// SubscribeToTaskEventBatches, everything queued in one message.
struct Feed {
    hub: Arc<Hub>,
    id: u64,
    rx: mpsc::Receiver<Bytes>,
    overflowed: Arc<AtomicBool>,
    batched: bool,
    done: bool,
}

impl Feed {
    /// SubscribeToTaskEventBatchesResponse: `events` (field 1) once per event.
    fn batch(&mut self, first: Bytes) -> Bytes {
        let mut out = BytesMut::with_capacity(first.len() * 2 + 8);
        field(1, &first, &mut out);
        while out.len() < BATCH_BYTES {
            match self.rx.try_recv() {
                Ok(next) => field(1, &next, &mut out),
                Err(_) => break,
            }
        }
        out.freeze()
    }
}

impl Stream for Feed {
    type Item = Result<Bytes, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(data)) => {
                let message = if self.batched { self.batch(data) } else { data };
                Poll::Ready(Some(Ok(message)))
            }
            Poll::Ready(None) => {
                self.done = true;
                if self.overflowed.load(Ordering::Acquire) {
                    Poll::Ready(Some(Err(Status::resource_exhausted("lagged"))))
                } else {
                    Poll::Ready(None)
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.hub.streams.lock() {
            guard.1.remove(&self.id);
        }
    }
}

// ---------------------------------------------------------------- services

#[derive(Clone)]
struct AddTask(Arc<Hub>);

impl UnaryService<Bytes> for AddTask {
    type Response = Bytes;
    type Future = BoxFuture<Response<Bytes>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let hub = self.0.clone();
        Box::pin(async move {
            let title = AddTitle::decode(request.into_inner())
                .map_err(|e| Status::invalid_argument(e.to_string()))?
                .title;
            hub.broadcast(&hub.created, &title);
            Ok(Response::new(hub.add_reply.clone()))
        })
    }
}

#[derive(Clone)]
struct UpdateTask(Arc<Hub>);

impl UnaryService<Bytes> for UpdateTask {
    type Response = Bytes;
    type Future = BoxFuture<Response<Bytes>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let hub = self.0.clone();
        Box::pin(async move {
            let title = UpdateTitle::decode(request.into_inner())
                .map_err(|e| Status::invalid_argument(e.to_string()))?
                .title
                .unwrap_or_default();
            hub.broadcast(&hub.updated, &title);
            Ok(Response::new(hub.update_reply.clone()))
        })
    }
}

#[derive(Clone)]
struct Subscribe {
    hub: Arc<Hub>,
    batched: bool,
}

impl ServerStreamingService<Bytes> for Subscribe {
    type Response = Bytes;
    type ResponseStream = Feed;
    type Future = BoxFuture<Response<Feed>, Status>;

    fn call(&mut self, _request: Request<Bytes>) -> Self::Future {
        // Registered before the response headers go out: a client that has
        // the headers is live, as with Rigger.
        let feed = self.hub.subscribe(self.batched);
        Box::pin(async move { Ok(Response::new(feed)) })
    }
}

fn unimplemented() -> http::Response<BoxBody> {
    let mut response = http::Response::new(tonic::codegen::empty_body());
    let headers = response.headers_mut();
    headers.insert("grpc-status", http::HeaderValue::from_static("12"));
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
    response
}

/// rigger.v1.RiggerService: the three methods the harness calls.
#[derive(Clone)]
struct Rigger(Arc<Hub>);

impl NamedService for Rigger {
    const NAME: &'static str = SERVICE;
}

impl<B> Service<http::Request<B>> for Rigger
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let hub = self.0.clone();
        let method = req.uri().path().rsplit('/').next().unwrap_or_default().to_owned();
        Box::pin(async move {
            let mut grpc = Grpc::new(RawCodec);
            Ok(match method.as_str() {
                "AddTask" => grpc.unary(AddTask(hub), req).await,
                "UpdateTask" => grpc.unary(UpdateTask(hub), req).await,
                "SubscribeToTaskEvents" => {
                    grpc.server_streaming(Subscribe { hub, batched: false }, req).await
                }
                "SubscribeToTaskEventBatches" => {
                    grpc.server_streaming(Subscribe { hub, batched: true }, req).await
                }
                _ => unimplemented(),
            })
        })
    }
}

#[derive(Clone)]
struct HealthCheck;

impl UnaryService<Bytes> for HealthCheck {
    type Response = Bytes;
    type Future = BoxFuture<Response<Bytes>, Status>;

    fn call(&mut self, _request: Request<Bytes>) -> Self::Future {
        // HealthCheckResponse { status: SERVING }
        Box::pin(async { Ok(Response::new(Bytes::from_static(b"\x08\x01"))) })
    }
}

/// grpc.health.v1.Health/Check, always SERVING: what ServerProcess waits for.
#[derive(Clone)]
struct Health;

impl NamedService for Health {
    const NAME: &'static str = "grpc.health.v1.Health";
}

impl<B> Service<http::Request<B>> for Health
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        Box::pin(async move {
            Ok(if req.uri().path() == "/grpc.health.v1.Health/Check" {
                Grpc::new(RawCodec).unary(HealthCheck, req).await
            } else {
                unimplemented()
            })
        })
    }
}

// ---------------------------------------------------------------- main

struct Args {
    port: u16,
    buffer: usize,
    ready_file: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("grpc") {
        return Err(
            "usage: rigger-ceiling-tonic grpc [--port P] [--buffer N] [--ready-file PATH] [--db IGNORED]"
                .into(),
        );
    }
    let mut parsed = Args { port: 0, buffer: 1000, ready_file: None };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => parsed.port = value.parse().map_err(|e| format!("--port: {e}"))?,
            "--buffer" => parsed.buffer = value.parse().map_err(|e| format!("--buffer: {e}"))?,
            "--ready-file" => parsed.ready_file = Some(value.into()),
            "--db" => {} // the ceiling stores nothing
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:{}: {e}", args.port));
    let port = listener.local_addr().expect("bound address").port();
    // grpc-core sets TCP_NODELAY too; without it the ceiling would batch writes
    // that the other servers send at once.
    let incoming = TcpIncoming::from_listener(listener, true, None).expect("listener");
    println!("tonic ceiling on 127.0.0.1:{port} ({} event buffer)", args.buffer);
    // What ServerProcess waits for, as `rig grpc --ready-file` writes it:
    // whole or not at all (written aside, then renamed).
    if let Some(path) = &args.ready_file {
        let partial = path.with_extension("partial");
        let ready = format!(
            "{{\"addresses\": [\"127.0.0.1:{port}\"], \"port\": {port}, \"pid\": {}}}\n",
            std::process::id()
        );
        std::fs::write(&partial, ready).expect("write the ready file");
        std::fs::rename(&partial, path).expect("write the ready file");
    }
    let hub = Arc::new(Hub::new(args.buffer));
    let server = tonic::transport::Server::builder()
        .add_service(Health)
        .add_service(Rigger(hub))
        .serve_with_incoming(incoming);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    // Nothing to flush: on a signal the ceiling simply exits, open streams or not.
    tokio::select! {
        result = server => {
            if let Err(e) = result {
                eprintln!("server failed: {e}");
                std::process::exit(1);
            }
        }
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
