import { createRouterTransport } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ChatService } from "../gen/fastchat/v1/chat_pb";
import { bearerAuth, createApiClients } from "./transport";

describe("bearerAuth", () => {
  it("adds the token current at call time, and nothing without one", async () => {
    const seen: (string | null)[] = [];
    let token = "";
    const transport = createRouterTransport(
      ({ service }) => {
        service(ChatService, {
          listConversations(_req, ctx) {
            seen.push(ctx.requestHeader.get("authorization"));
            return { conversations: [] };
          },
        });
      },
      { transport: { interceptors: [bearerAuth(() => token)] } },
    );
    const { chat } = createApiClients(transport);
    await chat.listConversations({});
    token = "abc";
    await chat.listConversations({});
    token = "def";
    await chat.listConversations({});
    expect(seen).toEqual([null, "Bearer abc", "Bearer def"]);
  });
});
