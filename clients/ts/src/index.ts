// The Rigger TypeScript client: the generated rigger.v1 API plus its helpers,
// connect() for a configured client, watchEvents() for a resuming event
// stream, and enum names as people type and read them. The sidecar is a
// separate program (the rigger-sidecar bin), not part of this entry point.
export * from "../gen/rigger/v1/rigger_pb.js";
export { connect, createRiggerTransport, type ConnectOptions } from "./client.js";
export { eventTypeName, formatEvent, parseEventType, quote, statusName } from "./names.js";
export {
  HEAD_SEQUENCE_HEADER,
  isRetryable,
  watchEvents,
  type RetryInfo,
  type SubscribedInfo,
  type WatchOptions,
  type WatchRequest,
} from "./watch.js";
