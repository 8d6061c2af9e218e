"""A FastChat peer in Python, for tests/python_client.rs.

It uses a client generated from proto/ by grpcio-tools (into --gen-dir; never committed):
opens a Chat stream with a Hello, prints `USER_ID <id>`, waits for one message, prints
`GOT <from_user_id> <text>`, replies `echo: <text>` to its sender, waits for the ack, prints
`ACKED <message_id>`, closes its side of the stream, reads what the server still sends until
it ends the stream, and exits 0. Any failure or timeout exits non-zero with the reason on stderr.

It asks for delivery receipts (Hello.receipts), as a client should: it tells the server which
messages to its user it has (ClientEvent.received) and drops a message whose seq it already has,
since the server sends again on a later session what a session's client did not acknowledge.
"""

import argparse
import queue
import sys
import threading


class Receipts:
    """Delivery receipts for one Chat session.

    A receipt is cumulative ("I have every message to me up to seq N"), so one is sent for the
    newest message a short pause after the first it covers (a burst costs one receipt), or at once
    when half of Welcome.receive_window is unacknowledged: at the full window the server stops
    sending messages until a receipt arrives.
    """

    def __init__(self, send, window: int, pause: float = 0.15):
        self.send = send  # called with the seq to acknowledge
        self.window = window
        self.pause = pause
        self.lock = threading.Lock()  # the stream's reader and the pause timer both flush
        self.newest = 0
        self.unacknowledged = 0
        self.timer = None
        self.closed = False

    def received(self, seq: int) -> None:
        """A message to this user arrived on the session (a duplicate too: it was sent again)."""
        with self.lock:
            if self.closed:
                return
            self.newest = max(self.newest, seq)
            self.unacknowledged += 1
            if 2 * self.unacknowledged >= self.window:
                self._flush()
            elif self.timer is None:
                self.timer = threading.Timer(self.pause, self.flush)
                self.timer.daemon = True
                self.timer.start()

    def flush(self) -> None:
        """Sends the receipt now if anything is unacknowledged."""
        with self.lock:
            self._flush()

    def close(self) -> None:
        """The last receipt, if one is due; none after that (the stream is closing)."""
        with self.lock:
            self._flush()
            self.closed = True

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.unacknowledged and not self.closed:
            self.send(self.newest)
            self.unacknowledged = 0


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

    def acknowledge(seq: int) -> None:
        outgoing.put(chat_pb2.ClientEvent(received=chat_pb2.Received(up_to_seq=seq)))

    # The whole conversation has a deadline, so a lost event fails instead of hanging.
    timed_out = threading.Event()

    def give_up() -> None:
        timed_out.set()
        call.cancel()

    timer = threading.Timer(args.timeout, give_up)
    with grpc.insecure_channel(args.addr) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        hello = chat_pb2.Hello(display_name=args.name, receipts=True)
        outgoing.put(chat_pb2.ClientEvent(hello=hello))
        call = stub.Chat(requests())
        timer.start()
        receipts = None
        try:
            me = None
            reply_id = "py-reply-1"
            replied = False
            closing = False
            seen = set()  # (peer, seq) of the messages this client has
            for event in call:
                kind = event.WhichOneof("event")
                if kind == "welcome":
                    me = event.welcome.user.user_id
                    if event.welcome.user.display_name != args.name:
                        raise SystemExit(f"welcome has the wrong name: {event.welcome}")
                    # A window of 0: the server keeps no receipts for this session; send none.
                    if event.welcome.receive_window > 0:
                        receipts = Receipts(acknowledge, event.welcome.receive_window)
                    say(f"USER_ID {me}")
                elif me is None:
                    raise SystemExit(f"first event was not a welcome: {event}")
                elif kind == "message":
                    message = event.message
                    if message.to_user_id != me:
                        # Our own message, echoed to our sessions: not ours to acknowledge.
                        continue
                    if receipts is not None:
                        # Acknowledged even when it is a duplicate: the server sent it again.
                        receipts.received(message.seq)
                    key = (message.from_user_id, message.seq)
                    if key in seen:
                        print(f"dropped a duplicate: seq {message.seq}", file=sys.stderr)
                        continue
                    seen.add(key)
                    if replied:
                        continue
                    replied = True
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
                    # Done: the last receipt, then close our side; the server ends the stream
                    # once it has answered everything we sent.
                    if receipts is not None:
                        receipts.close()
                    closing = True
                    outgoing.put(done)
                elif kind == "error":
                    raise SystemExit(f"server sent an error: {event.error}")
            if closing:
                return 0
            raise SystemExit("the server ended the stream early")
        except grpc.RpcError as err:
            if timed_out.is_set():
                raise SystemExit(f"timed out after {args.timeout} s") from err
            raise SystemExit(f"Chat stream failed: {err.code()} {err.details()}") from err
        finally:
            timer.cancel()
            if receipts is not None:
                receipts.close()
            outgoing.put(done)


if __name__ == "__main__":
    sys.exit(main())
