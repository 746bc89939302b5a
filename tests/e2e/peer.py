"""E2E peer: a slixmpp client over TCP+STARTTLS that auto-accepts subscriptions, echoes chat messages and joins rooms.

Usage: peer.py JID PASSWORD PORT. Prints JSON lines (ready, message, subscribe, muc-joined,
muc-message, muc-presence, ...) on stdout and reads JSON commands on stdin:
  {"cmd": "send", "to": ..., "body": ...}
  {"cmd": "send-many", "to": ..., "prefix": ..., "count": N, "type": "chat"|"groupchat"}  -> sent-many
  {"cmd": "muc-join", "room": ..., "nick": ..., "password": ..., "config": {var: value}}  -> muc-joined / muc-join-error
      (a room this creates is unlocked with `config` submitted as its configuration, empty = instant room)
  {"cmd": "muc-send", "room": ..., "body": ...}
  {"cmd": "muc-subject", "room": ..., "subject": ...}
  {"cmd": "muc-leave", "room": ..., "nick": ...}
  {"cmd": "invite", "to": ..., "room": ..., "reason": ...}  (XEP-0249 direct invitation)
  {"cmd": "quit"}
"""
import asyncio
import json
import ssl
import sys
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import PresenceError

NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
NS_DATA = "jabber:x:data"


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
        self.register_plugin("xep_0045")
        self.add_event_handler("groupchat_message", self.on_groupchat)
        self.add_event_handler("groupchat_presence", self.on_muc_presence)
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
        # Room invitations and private messages from rooms are not chats to echo.
        if msg.xml.find("{%s}x" % NS_MUC_USER) is not None or msg.xml.find("{jabber:x:conference}x") is not None:
            return
        sender = str(msg["from"].bare)
        emit(event="message", **{"from": sender, "body": msg["body"], "id": msg["id"]})
        self.send_message(mto=msg["from"], mbody="echo: " + msg["body"], mtype="chat")

    def on_groupchat(self, msg):
        if not msg["body"]:
            return
        delayed = msg.xml.find("{urn:xmpp:delay}delay") is not None
        emit(event="muc-message", room=str(msg["from"].bare), nick=msg["from"].resource, body=msg["body"], delayed=delayed)

    def on_muc_presence(self, pres):
        if pres["type"] == "error":
            return
        emit(event="muc-presence", room=str(pres["from"].bare), nick=pres["from"].resource, type=pres["type"])

    async def muc_join(self, cmd):
        room, nick = cmd["room"], cmd["nick"]
        try:
            pres, _subject, _occupants, _history = await self.plugin["xep_0045"].join_muc_wait(
                room, nick, password=cmd.get("password"), maxstanzas=0, timeout=15
            )
        except PresenceError as e:
            emit(event="muc-join-error", room=room, condition=e.condition)
            return
        codes = [int(s.get("code")) for s in pres.xml.findall("{%s}x/{%s}status" % (NS_MUC_USER, NS_MUC_USER))]
        if 201 in codes:
            # A new room stays locked until configured: submit the wanted fields (none: an instant room).
            iq = self.make_iq_set(ito=room)
            query = ET.Element("{%s}query" % NS_MUC_OWNER)
            form = ET.SubElement(query, "{%s}x" % NS_DATA, type="submit")
            config = cmd.get("config") or {}
            if config:
                config = {"FORM_TYPE": "http://jabber.org/protocol/muc#roomconfig", **config}
            for var, value in config.items():
                field = ET.SubElement(form, "{%s}field" % NS_DATA, var=var)
                ET.SubElement(field, "{%s}value" % NS_DATA).text = str(value)
            iq.xml.append(query)
            await iq.send()
        emit(event="muc-joined", room=room, nick=pres["from"].resource, codes=codes)

    def invite(self, cmd):
        msg = self.make_message(mto=cmd["to"])
        x = ET.Element("{jabber:x:conference}x", jid=cmd["room"])
        if cmd.get("reason"):
            x.set("reason", cmd["reason"])
        msg.xml.append(x)
        msg.send()


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
        elif cmd["cmd"] == "send-many":
            width = len(str(cmd["count"]))
            for i in range(1, cmd["count"] + 1):
                xmpp.send_message(mto=cmd["to"], mbody="%s %0*d" % (cmd["prefix"], width, i), mtype=cmd.get("type", "chat"))
            emit(event="sent-many", to=cmd["to"], count=cmd["count"])
        elif cmd["cmd"] == "muc-join":
            asyncio.ensure_future(xmpp.muc_join(cmd))
        elif cmd["cmd"] == "muc-send":
            xmpp.send_message(mto=cmd["room"], mbody=cmd["body"], mtype="groupchat")
        elif cmd["cmd"] == "muc-subject":
            xmpp.send_message(mto=cmd["room"], msubject=cmd["subject"], mtype="groupchat")
        elif cmd["cmd"] == "muc-leave":
            xmpp.plugin["xep_0045"].leave_muc(cmd["room"], cmd["nick"])
        elif cmd["cmd"] == "invite":
            xmpp.invite(cmd)
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
