"""A FastChat peer in Python, for tests/python_client.rs.

It uses a client generated from proto/ by grpcio-tools (into --gen-dir; never committed):
opens a Chat stream with a Hello, prints `USER_ID <id>`, waits for one message, prints
`GOT <from_user_id> <text>`, replies `echo: <text>` to its sender, waits for the ack, prints
`ACKED <message_id>` and exits 0. Any failure or timeout exits non-zero with the reason on stderr.
"""

import argparse
import queue
import sys
import threading


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addr", required=True, help="host:port of the FastChat server")
    parser.add_argument("--gen-dir", required=True, help="where grpc_tools.protoc wrote the code")
    parser.add_argument("--name", default="Py", help="display name to claim")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for the whole chat")
    args = parser.parse_args()

    sys.path.insert(0, args.gen_dir)
    import grpc
    from fastchat.v1 import chat_pb2, chat_pb2_grpc

    outgoing: "queue.Queue[object]" = queue.Queue()
    done = object()

    def requests():
        while True:
            event = outgoing.get()
            if event is done:
                return
            yield event

    def say(line: str) -> None:
        print(line, flush=True)

    # The whole conversation has a deadline, so a lost event fails instead of hanging.
    timed_out = threading.Event()

    def give_up() -> None:
        timed_out.set()
        call.cancel()

    timer = threading.Timer(args.timeout, give_up)
    with grpc.insecure_channel(args.addr) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        outgoing.put(chat_pb2.ClientEvent(hello=chat_pb2.Hello(display_name=args.name)))
        call = stub.Chat(requests())
        timer.start()
        try:
            me = None
            reply_id = "py-reply-1"
            for event in call:
                kind = event.WhichOneof("event")
                if kind == "welcome":
                    me = event.welcome.user.user_id
                    if event.welcome.user.display_name != args.name:
                        raise SystemExit(f"welcome has the wrong name: {event.welcome}")
                    say(f"USER_ID {me}")
                elif me is None:
                    raise SystemExit(f"first event was not a welcome: {event}")
                elif kind == "message":
                    message = event.message
                    if message.to_user_id != me:
                        raise SystemExit(f"message not addressed to me: {message}")
                    say(f"GOT {message.from_user_id} {message.text}")
                    outgoing.put(
                        chat_pb2.ClientEvent(
                            send_message=chat_pb2.SendMessageRequest(
                                client_msg_id=reply_id,
                                to_user_id=message.from_user_id,
                                text=f"echo: {message.text}",
                            )
                        )
                    )
                elif kind == "ack" and event.ack.client_msg_id == reply_id:
                    if event.ack.status != chat_pb2.MESSAGE_STATUS_SENT:
                        raise SystemExit(f"ack is not SENT: {event.ack}")
                    say(f"ACKED {event.ack.message_id}")
                    outgoing.put(done)
                    call.cancel()
                    return 0
                elif kind == "error":
                    raise SystemExit(f"server sent an error: {event.error}")
            raise SystemExit("the server ended the stream early")
        except grpc.RpcError as err:
            if timed_out.is_set():
                raise SystemExit(f"timed out after {args.timeout} s") from err
            raise SystemExit(f"Chat stream failed: {err.code()} {err.details()}") from err
        finally:
            timer.cancel()
            outgoing.put(done)


if __name__ == "__main__":
    sys.exit(main())
