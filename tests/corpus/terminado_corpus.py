"""terminado (Jupyter's terminal backend) behind a tornado server on a loopback port, with a
UniqueTermManager (one terminal per websocket); a tornado websocket client opens 10 tabs,
runs a command in each, and closes them. Healthy: terminado kills and closes a terminal when
its websocket goes.

  terminado_corpus.py server   the server (the root of an attach session): writes its port to
                               $CORPUS_SYNC/terminado.port; stops on SIGTERM
  terminado_corpus.py drive    the client: 10 tabs (with CORPUS_PAUSE=1 it pauses at the
                               checkpoint while all 10 are open), then waits until the server
                               has no terminal left
  terminado_corpus.py all      the server as a child, drive, stop it (the run workload)"""
import asyncio
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus_sync import checkpoint  # noqa: E402

W = os.environ["CORPUS_SYNC"]
PORT_FILE = os.path.join(W, "terminado.port")
TABS = 10


async def serve():
    import tornado.httpserver
    import tornado.netutil
    import tornado.web
    from terminado import TermSocket, UniqueTermManager

    tm = UniqueTermManager(shell_command=["bash", "--norc", "--noprofile"], max_terminals=TABS * 2)

    class Count(tornado.web.RequestHandler):
        def get(self):
            self.write(str(len(tm.ptys_by_fd)))

    app = tornado.web.Application([(r"/websocket", TermSocket, {"term_manager": tm}), (r"/count", Count)])
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    with open(PORT_FILE + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(PORT_FILE + ".tmp", PORT_FILE)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.stop()
    await tm.shutdown()


def wait_port(timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(PORT_FILE):
            return int(open(PORT_FILE).read())
        time.sleep(0.02)
    raise SystemExit("the terminado server wrote no port")


async def drive():
    from tornado.httpclient import AsyncHTTPClient
    from tornado.websocket import websocket_connect

    port = wait_port()
    tabs = [await websocket_connect(f"ws://127.0.0.1:{port}/websocket") for _ in range(TABS)]

    async def until(ws, text):
        seen = ""
        while text not in seen:
            msg = await asyncio.wait_for(ws.read_message(), 20)
            if msg is None:
                raise SystemExit(f"websocket closed before {text!r}: {seen!r}")
            kind, *rest = json.loads(msg)
            if kind == "stdout":
                seen += rest[0]

    for n, ws in enumerate(tabs):
        # The output ("tab 7 ok") differs from the echoed input.
        ws.write_message(json.dumps(["stdin", f"echo tab {n} $((1 - 1))k; ls / > /dev/null\r"]))
    for n, ws in enumerate(tabs):
        await until(ws, f"tab {n} 0k")
    checkpoint()
    for ws in tabs:
        ws.close()
    http = AsyncHTTPClient()
    end = time.time() + 20
    while True:
        left = int((await http.fetch(f"http://127.0.0.1:{port}/count")).body)
        if left == 0:
            break
        if time.time() > end:
            raise SystemExit(f"terminado still has {left} terminals")
        await asyncio.sleep(0.05)


which = sys.argv[1]
if which == "server":
    asyncio.run(serve())
elif which == "drive":
    asyncio.run(drive())
elif which == "all":
    server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "server"])
    try:
        asyncio.run(drive())
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()
else:
    sys.exit(f"unknown step {which}")
