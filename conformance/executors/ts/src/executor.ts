// The TypeScript conformance executor: `node dist/src/executor.js`.
//
// It speaks the rigger.conformance.v1 harness protocol: size-delimited
// Instructions arrive on stdin, size-delimited Observations leave on stdout.
// It never judges. Each instruction is started as it arrives, so calls run
// concurrently; whatever the server sends back is parsed with the generated
// rigger.v1 code and re-serialized, so the runner sees exactly what this
// language's generated code made of it. There are no retries or reconnects
// here: the executor drives the plain client that connect() returns.
import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethod,
  type Message,
  type MessageInitShape,
} from "@bufbuild/protobuf";
import { sizeDelimitedDecodeStream, sizeDelimitedEncode } from "@bufbuild/protobuf/wire";
import {
  ConnectError,
  createContextKey,
  createContextValues,
  type CallOptions,
  type Client,
  type Interceptor,
} from "@connectrpc/connect";

import {
  HeaderSchema,
  InstructionSchema,
  ObservationSchema,
  StatusSchema,
  type Connect,
  type Instruction,
  type OpenStream,
  type StreamCancel,
  type StreamCloseSend,
  type StreamSend,
  type UnaryCall,
} from "../gen/rigger/conformance/v1/harness_pb.js";
import { RiggerService, connect } from "@rigger-dev/client";

type Result = NonNullable<MessageInitShape<typeof ObservationSchema>["result"]>;
type Status = MessageInitShape<typeof StatusSchema>;

// How long Shutdown waits for aborted calls to report; a wedged call must not
// keep the process alive.
const SHUTDOWN_GRACE_MS = 5000;

// Carried in Status, so not repeated as metadata (the other executors' gRPC
// libraries strip them too).
const STATUS_KEYS = new Set(["grpc-status", "grpc-message"]);

// --- output ---------------------------------------------------------------------

/**
 * Writes one Observation. Everything is written from this one thread, one
 * whole frame per write call, so frames never interleave and keep their order.
 */
function emit(instructionId: bigint, result: Result): void {
  const observation = create(ObservationSchema, { instructionId, result });
  process.stdout.write(sizeDelimitedEncode(ObservationSchema, observation));
}

function done(instructionId: bigint): void {
  emit(instructionId, { case: "done", value: {} });
}

function executorError(instructionId: bigint, error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  emit(instructionId, { case: "executorError", value: { message } });
}

/** Metadata entries as the protocol reports them: lower-case keys, values as on the wire. */
function headerList(headers: Headers | undefined): MessageInitShape<typeof HeaderSchema>[] {
  const list: MessageInitShape<typeof HeaderSchema>[] = [];
  headers?.forEach((value, key) => {
    if (!STATUS_KEYS.has(key)) {
      list.push({ key, value });
    }
  });
  return list;
}

/**
 * Why a call failed. connect-es fails calls only with ConnectError; anything
 * else is a bug here, rethrown to be reported as one.
 */
function callError(error: unknown): ConnectError {
  if (!(error instanceof ConnectError)) {
    throw error;
  }
  return error;
}

function statusOf(error: ConnectError): Status {
  // connect-es Code numbers are the gRPC status codes.
  return { code: error.code, message: error.rawMessage };
}

// --- the client -------------------------------------------------------------------

// The live response of a streaming call, which connect-es fills with the
// trailers as they arrive. The typed client passes trailers to onTrailer only
// on a clean end; after an error it merges them with the headers into
// ConnectError.metadata, which would report rigger-head-sequence as a trailer.
const trailerSlot = createContextKey<{ trailer?: Headers } | undefined>(undefined);

const keepTrailer: Interceptor = (next) => async (req) => {
  const res = await next(req);
  const slot = req.contextValues.get(trailerSlot);
  if (slot !== undefined) {
    slot.trailer = res.trailer;
  }
  return res;
};

type RiggerClient = Client<typeof RiggerService>;

// A method of the client as the executor calls it. The client is keyed by each
// method's localName and the method is only known at run time, so the static
// type cannot follow it.
type AnyMethod = (input: unknown, options: CallOptions) => unknown;

function methodNamed(name: string): DescMethod {
  const method = RiggerService.methods.find((m) => m.name === name);
  if (method === undefined) {
    throw new Error(`${RiggerService.typeName} has no method ${JSON.stringify(name)}`);
  }
  return method;
}

function callable(client: RiggerClient, method: DescMethod): AnyMethod {
  return (client as unknown as Record<string, AnyMethod>)[method.localName] as AnyMethod;
}

function parse<Desc extends DescMessage>(schema: Desc, bytes: Uint8Array, what: string): Message {
  try {
    return fromBinary(schema, bytes);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new Error(`${what} is not a valid ${schema.typeName}: ${why}`);
  }
}

function callOptions(
  metadata: Record<string, string>,
  timeoutMs: number,
  signal: AbortSignal,
): CallOptions {
  return { signal, headers: metadata, ...(timeoutMs > 0 && { timeoutMs }) };
}

// --- streams ------------------------------------------------------------------------

/**
 * The request side of a bidi stream: StreamSend pushes, StreamCloseSend ends
 * it, and the transport pulls from messages().
 */
class Outbox {
  private readonly queue: Message[] = [];
  private closed = false;
  private wake: (() => void) | undefined;

  push(message: Message): void {
    this.queue.push(message);
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.wake?.();
  }

  async *messages(): AsyncGenerator<Message> {
    for (;;) {
      const next = this.queue.shift();
      if (next !== undefined) {
        yield next;
      } else if (this.closed) {
        return;
      } else {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
      }
    }
  }
}

/** One stream opened by OpenStream. */
interface OpenCall {
  readonly method: DescMethod;
  readonly abort: AbortController;
  /** Only for bidi streams. */
  readonly outbox: Outbox | undefined;
  ended: boolean;
}

// --- the executor ---------------------------------------------------------------------

class Executor {
  private client: RiggerClient | undefined;
  private readonly streams = new Map<string, OpenCall>();
  // Aborts every call at Shutdown.
  private readonly stopping = new AbortController();
  // Background work (calls, stream readers), awaited at Shutdown.
  private readonly running = new Set<Promise<void>>();

  /**
   * Starts one instruction. Whatever later instructions depend on (the
   * current client, a stream's registration) happens here, synchronously and
   * in arrival order; the waiting happens in the background.
   */
  dispatch(instruction: Instruction): void {
    const id = instruction.id;
    const action = instruction.action;
    try {
      switch (action.case) {
        case "connect":
          return this.connect(id, action.value);
        case "unaryCall":
          return this.unaryCall(id, action.value);
        case "openStream":
          return this.openStream(id, action.value);
        case "streamSend":
          return this.streamSend(id, action.value);
        case "streamCloseSend":
          return this.streamCloseSend(id, action.value);
        case "streamCancel":
          return this.streamCancel(id, action.value);
        case "shutdown":
          throw new Error("Shutdown is handled by serve()");
        default:
          throw new Error(`instruction ${id} has no action this executor knows`);
      }
    } catch (e) {
      executorError(id, e);
    }
  }

  private connect(id: bigint, action: Connect): void {
    // The protocol says an empty ca_file means plaintext, whatever else is set.
    const tls = action.caFile !== "";
    this.client = connect({
      address: tls ? action.address : `http://${action.address}`,
      caFile: tls ? action.caFile : undefined,
      certFile: tls && action.certFile !== "" ? action.certFile : undefined,
      keyFile: tls && action.keyFile !== "" ? action.keyFile : undefined,
      token: action.token !== "" ? action.token : undefined,
      interceptors: [keepTrailer],
    });
    done(id);
  }

  private currentClient(): RiggerClient {
    if (this.client === undefined) {
      throw new Error("no client: send Connect first");
    }
    return this.client;
  }

  private unaryCall(id: bigint, action: UnaryCall): void {
    const method = methodNamed(action.method);
    if (method.methodKind !== "unary") {
      throw new Error(`${action.method} is a ${method.methodKind} method; use OpenStream`);
    }
    const request = parse(method.input, action.request, "the request");
    const call = callable(this.currentClient(), method);
    let header: Headers | undefined;
    let trailer: Headers | undefined;
    const options: CallOptions = {
      ...callOptions(action.metadata, action.timeoutMs, this.stopping.signal),
      onHeader: (h) => (header = h),
      onTrailer: (t) => (trailer = t),
    };
    this.track(id, async () => {
      let response: Message;
      try {
        response = (await call(request, options)) as Message;
      } catch (e) {
        const error = callError(e);
        // Headers and trailers come merged on an error; a gRPC error is
        // usually trailers-only anyway, so they are reported as trailers.
        const value = { status: statusOf(error), trailers: headerList(error.metadata) };
        emit(id, { case: "unaryResult", value });
        return;
      }
      const value = {
        response: toBinary(method.output, response),
        status: { code: 0, message: "" },
        headers: headerList(header),
        trailers: headerList(trailer),
      };
      emit(id, { case: "unaryResult", value });
    });
  }

  private openStream(id: bigint, action: OpenStream): void {
    const name = action.stream;
    if (this.streams.get(name)?.ended === false) {
      throw new Error(`stream ${JSON.stringify(name)} is already open`);
    }
    const method = methodNamed(action.method);
    if (method.methodKind !== "server_streaming" && method.methodKind !== "bidi_streaming") {
      throw new Error(`${action.method} is a ${method.methodKind} method, not a stream to read`);
    }
    const outbox = method.methodKind === "bidi_streaming" ? new Outbox() : undefined;
    const input = outbox?.messages() ?? parse(method.input, action.request, "the request");
    const call = callable(this.currentClient(), method);

    const stream: OpenCall = { method, abort: new AbortController(), outbox, ended: false };
    const slot: { trailer?: Headers } = {};
    let trailersOnly: Headers | undefined;
    const onHeader = (headers: Headers): void => {
      // connect-es hands over a trailers-only response that ends OK as
      // headers; such a response has trailers and no headers. (One that
      // ends in an error never gets here.)
      if (headers.has("grpc-status")) {
        trailersOnly = headers;
        return;
      }
      emit(id, { case: "streamHeaders", value: { stream: name, headers: headerList(headers) } });
    };
    const signal = AbortSignal.any([stream.abort.signal, this.stopping.signal]);
    const messages = call(input, {
      ...callOptions(action.metadata, action.timeoutMs, signal),
      contextValues: createContextValues().set(trailerSlot, slot),
      onHeader,
    }) as AsyncIterable<Message>;
    this.streams.set(name, stream);
    done(id);

    this.track(id, async () => {
      let status: Status = { code: 0, message: "" };
      let metadata: Headers | undefined;
      try {
        for await (const message of messages) {
          const receivedMonotonicNs = process.hrtime.bigint(); // CLOCK_MONOTONIC on Linux
          const bytes = toBinary(method.output, message);
          emit(id, {
            case: "streamMessage",
            value: { stream: name, message: bytes, receivedMonotonicNs },
          });
        }
      } catch (e) {
        const error = callError(e);
        status = statusOf(error);
        // Without headers the response was trailers-only: its one header
        // block, which the error carries, holds the trailers.
        metadata = error.metadata;
      } finally {
        stream.ended = true;
      }
      // Releases the transport's pull on the request side, if it still waits.
      outbox?.close();
      const trailers = headerList(trailersOnly ?? slot.trailer ?? metadata);
      emit(id, { case: "streamEnd", value: { stream: name, status, trailers } });
    });
  }

  private openCall(name: string): OpenCall {
    const stream = this.streams.get(name);
    if (stream === undefined) {
      throw new Error(`no stream named ${JSON.stringify(name)} was opened`);
    }
    return stream;
  }

  private outboxOf(name: string): Outbox {
    const { outbox } = this.openCall(name);
    if (outbox === undefined) {
      throw new Error(`stream ${JSON.stringify(name)} is not a bidi stream`);
    }
    return outbox;
  }

  // Send, close-send and cancel on a stream that has ended answer Done: there
  // is nothing left to do, and its StreamEnd already told how it ended.

  private streamSend(id: bigint, action: StreamSend): void {
    const outbox = this.outboxOf(action.stream);
    outbox.push(parse(this.openCall(action.stream).method.input, action.message, "the message"));
    done(id);
  }

  private streamCloseSend(id: bigint, action: StreamCloseSend): void {
    this.outboxOf(action.stream).close();
    done(id);
  }

  private streamCancel(id: bigint, action: StreamCancel): void {
    // The reader then reports StreamEnd with connect-es's CANCELLED.
    this.openCall(action.stream).abort.abort();
    done(id);
  }

  /** Runs work in the background; an exception in it is an executor bug, reported as such. */
  private track(id: bigint, work: () => Promise<void>): void {
    const task = work().catch((e: unknown) => executorError(id, e));
    this.running.add(task);
    void task.finally(() => this.running.delete(task));
  }

  /** Aborts every call and waits (a bounded time) for each to report how it ended. */
  async stop(): Promise<void> {
    this.stopping.abort();
    for (const stream of this.streams.values()) {
      stream.outbox?.close();
    }
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_GRACE_MS)));
    await Promise.race([Promise.allSettled([...this.running]), grace]);
    clearTimeout(timer);
  }
}

/** Runs instructions from stdin until Shutdown or the end of input; returns the exit code. */
async function serve(): Promise<number> {
  const executor = new Executor();
  try {
    for await (const instruction of sizeDelimitedDecodeStream(InstructionSchema, process.stdin)) {
      if (instruction.action.case === "shutdown") {
        await executor.stop();
        done(instruction.id);
        return 0;
      }
      executor.dispatch(instruction);
    }
  } catch (e) {
    // The framing is lost: nothing after this can be read.
    executorError(0n, `cannot read instructions: ${e instanceof Error ? e.message : String(e)}`);
    await executor.stop();
    return 1;
  }
  // The runner went away without Shutdown: clean up quietly.
  await executor.stop();
  return 0;
}

// Nobody reads our observations any more: nothing useful is left to do.
process.stdout.on("error", () => process.exit(1));

const code = await serve();
// Exit once every observation is flushed; open HTTP/2 sessions would
// otherwise keep the process alive.
process.stdout.write(new Uint8Array(0), () => process.exit(code));
