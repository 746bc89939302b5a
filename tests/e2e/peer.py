"""E2E peer: a slixmpp client over TCP+STARTTLS that auto-accepts subscriptions and echoes chat messages.

Usage: peer.py JID PASSWORD PORT. Prints JSON lines (ready, message, subscribe, ...) on stdout and
reads JSON commands on stdin: {"cmd": "send", "to": ..., "body": ...}, {"cmd": "quit"}.
"""
import asyncio
import json
import ssl
import sys

import slixmpp


def emit(**event):
    print(json.dumps(event), flush=True)


class Peer(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        # Rookery's generated certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        self.auto_authorize = True
        self.auto_subscribe = True
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0184")  # answers receipt requests
        self.register_plugin("xep_0199")
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("presence_subscribe", lambda p: emit(event="subscribe", **{"from": str(p["from"].bare)}))
        self.add_event_handler("presence_subscribed", lambda p: emit(event="subscribed", **{"from": str(p["from"].bare)}))
        self.add_event_handler("failed_auth", lambda _: emit(event="failed_auth"))
        self.add_event_handler("disconnected", lambda _: emit(event="disconnected"))

    async def on_start(self, _):
        await self.get_roster()
        self.send_presence(pstatus="echo bot")
        emit(event="ready", jid=str(self.boundjid))

    def on_message(self, msg):
        if msg["type"] not in ("chat", "normal") or not msg["body"]:
            return
        sender = str(msg["from"].bare)
        emit(event="message", **{"from": sender, "body": msg["body"], "id": msg["id"]})
        self.send_message(mto=msg["from"], mbody="echo: " + msg["body"], mtype="chat")


async def commands(xmpp):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd["cmd"] == "send":
            xmpp.send_message(mto=cmd["to"], mbody=cmd["body"], mtype="chat")
        elif cmd["cmd"] == "quit":
            break
    xmpp.disconnect()
    await asyncio.sleep(0)


async def main():
    jid, password, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    xmpp = Peer(jid, password)
    xmpp.connect("127.0.0.1", port)
    await commands(xmpp)
    try:
        await asyncio.wait_for(xmpp.disconnected, 5)
    except Exception:
        pass


if __name__ == "__main__":
    asyncio.run(main())
