import { readFileSync } from "node:fs";

import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { RiggerService } from "../gen/rigger/v1/rigger_pb.js";

/** How to reach a Rigger server. */
export interface ConnectOptions {
  /**
   * host:port, e.g. "localhost:50051" or "[::1]:50051". An explicit
   * "http://" or "https://" prefix is honoured; otherwise TLS is used exactly
   * when a CA, certificate or key file is given.
   */
  address: string;
  /** PEM CA bundle to verify the server with (replaces the system roots). */
  caFile?: string | undefined;
  /** PEM client certificate for mutual TLS; needs keyFile. */
  certFile?: string | undefined;
  /** PEM private key for certFile. */
  keyFile?: string | undefined;
  /** Sent as `authorization: Bearer <token>` on every call, streams included. */
  token?: string | undefined;
  /**
   * HTTP/2 PING interval while a call is open, so that a dead connection
   * under a quiet event stream is noticed (and NAT/proxy idle timers are
   * reset). Default 30000. A server that finds this too frequent answers
   * GOAWAY "too_many_pings"; connect-node then doubles the interval, and
   * watchEvents resumes the broken stream without loss.
   */
  pingIntervalMs?: number | undefined;
  /** Further interceptors, run after the built-in ones. */
  interceptors?: Interceptor[] | undefined;
}

/**
 * Creates the gRPC (HTTP/2) transport that connect() uses, for callers that
 * want other services or their own client on the same settings.
 */
export function createRiggerTransport(options: ConnectOptions): Transport {
  const tlsFiles = [options.caFile, options.certFile, options.keyFile];
  if ((options.certFile === undefined) !== (options.keyFile === undefined)) {
    throw new Error("certFile and keyFile must be given together");
  }
  const baseUrl = toBaseUrl(options.address, tlsFiles.some((f) => f !== undefined));

  const interceptors: Interceptor[] = [];
  if (options.token !== undefined) {
    interceptors.push(bearer(options.token));
  }
  interceptors.push(...(options.interceptors ?? []));

  // createGrpcTransport always speaks HTTP/2 (it fixes httpVersion to "2").
  return createGrpcTransport({
    baseUrl,
    interceptors,
    pingIntervalMs: options.pingIntervalMs ?? 30_000,
    pingTimeoutMs: 20_000,
    nodeOptions: {
      ...(options.caFile !== undefined && { ca: readFileSync(options.caFile) }),
      ...(options.certFile !== undefined && { cert: readFileSync(options.certFile) }),
      ...(options.keyFile !== undefined && { key: readFileSync(options.keyFile) }),
    },
  });
}

/**
 * Connects to a Rigger server. The result is the plain connect-es client for
 * the generated RiggerService: every RPC, request and response type is the
 * generated one. Nothing is dialled until the first call.
 */
export function connect(options: ConnectOptions): Client<typeof RiggerService> {
  return createClient(RiggerService, createRiggerTransport(options));
}

function bearer(token: string): Interceptor {
  const value = `Bearer ${token}`;
  return (next) => async (req) => {
    req.header.set("authorization", value);
    return next(req);
  };
}

function toBaseUrl(address: string, tls: boolean): string {
  if (/^https?:\/\//i.test(address)) {
    return address;
  }
  return `${tls ? "https" : "http"}://${address}`;
}
