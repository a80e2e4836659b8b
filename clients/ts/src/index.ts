// The Rigger TypeScript client: the generated rigger.v1 API plus two helpers,
// connect() for a configured client and watchEvents() for a resuming event
// stream.
export * from "../gen/rigger/v1/rigger_pb.js";
export { connect, createRiggerTransport, type ConnectOptions } from "./client.js";
export {
  HEAD_SEQUENCE_HEADER,
  isRetryable,
  watchEvents,
  type RetryInfo,
  type SubscribedInfo,
  type WatchOptions,
  type WatchRequest,
} from "./watch.js";
