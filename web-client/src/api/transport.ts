/**
 * How the client reaches the server: grpc-web (tonic-web speaks grpc-web, not the Connect
 * protocol) in the binary format, on the page's own origin. The transport is created once per
 * page; every call carries `authorization: Bearer <token>` once the store has a token.
 */
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ChatService } from "../gen/fastchat/v1/chat_pb";
import { PresenceService } from "../gen/fastchat/v1/presence_pb";

export type ChatClient = Client<typeof ChatService>;
export type PresenceClient = Client<typeof PresenceService>;

export interface ApiClients {
  chat: ChatClient;
  presence: PresenceClient;
}

/** Adds `authorization: Bearer <token>` to every call, reading the token current at call time. */
export function bearerAuth(getToken: () => string | null | undefined): Interceptor {
  return (next) => (req) => {
    const token = getToken();
    if (token && !req.header.has("authorization")) {
      req.header.set("authorization", `Bearer ${token}`);
    }
    return next(req);
  };
}

/** The browser transport: grpc-web, binary, same origin (the dev server proxies the API). */
export function createApiTransport(
  getToken: () => string | null | undefined,
  baseUrl: string = window.location.origin,
): Transport {
  return createGrpcWebTransport({
    baseUrl,
    useBinaryFormat: true,
    interceptors: [bearerAuth(getToken)],
  });
}

/** Typed clients on one transport. */
export function createApiClients(transport: Transport): ApiClients {
  return {
    chat: createClient(ChatService, transport),
    presence: createClient(PresenceService, transport),
  };
}

let pageTransport: Transport | undefined;

/** The page's one transport, created on first use. */
export function getPageTransport(getToken: () => string | null | undefined): Transport {
  pageTransport ??= createApiTransport(getToken);
  return pageTransport;
}
