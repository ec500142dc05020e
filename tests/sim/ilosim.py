#!/usr/bin/python3
"""An HP iLO MP / SMASH CLP command line, over telnet (TCP) or on stdin/stdout.

    ilosim.py --telnet PORT DIR     telnet server: IAC negotiation, MP login
    ilosim.py --stdio DIR           one session on stdin/stdout (sshd ForceCommand;
                                    ssh has authenticated the user already)
    ilosim.py --stdio-raw DIR       the same, as an embedded SSH CLI: no terminal
                                    line discipline (a tty is put in raw mode), a
                                    line ends at LF only, the CLI echoes what it
                                    reads itself

Users admin/secret.  Prompts ``MP login:``, ``MP password:``, ``MP>``; ``SMCLP``
switches to ``hpiLO->``.  ``show /system1`` prints ``EnabledState=Enabled`` or
``Disabled``; ``start /system1`` / ``stop -f /system1`` answer ``status=0``.
The chassis is DIR/power (on/off).  DIR/mode, read for every command, makes
faults: ``stuck`` (stop accepted, nothing happens), ``unknown``
(EnabledState=Unknown), ``garbage`` (show prints an error, no EnabledState),
``refuse`` (start/stop answer ``status=2`` with an error tag).  Commands go to
DIR/commands.log (the password never does).
"""

import os
import socket
import socketserver
import sys
import time

IAC, DO, WILL = 255, 253, 251
ECHO, SGA = 1, 3


class CLI:
    def __init__(self, folder, read, write):
        self.dir = folder
        self.read = read
        self.write = write
        self.prompt = "MP> "

    def _file(self, name, default=""):
        try:
            with open(os.path.join(self.dir, name)) as f:
                return f.read().strip()
        except FileNotFoundError:
            return default

    def log(self, text):
        with open(os.path.join(self.dir, "commands.log"), "a") as f:
            f.write(f"{time.time():.3f} {text}\n")

    def set_power(self, state):
        with open(os.path.join(self.dir, "power"), "w") as f:
            f.write(state + "\n")

    def run(self):
        self.write(self.prompt)
        while True:
            line = self.read()
            if line is None:
                return
            cmd = line.strip()
            if not cmd:
                self.write(self.prompt)
                continue
            self.log(cmd)
            mode = self._file("mode")
            if cmd.lower() in ("exit", "x"):
                self.write("Bye.\r\n")
                return
            if cmd == "SMCLP":
                self.prompt = "hpiLO-> "
                self.write("\r\n")
            elif cmd == "show /system1":
                if mode == "garbage":
                    self.write("status=2\r\nerror_tag=COMMAND PROCESSING FAILED\r\n")
                else:
                    state = self._file("power", "on")
                    value = {"on": "Enabled", "off": "Disabled"}[state]
                    if mode == "unknown":
                        value = "Unknown"
                    self.write("status=0\r\nstatus_tag=COMMAND COMPLETED\r\n\r\n/system1\r\n"
                               f"  Targets\r\n  Properties\r\n    name=hpiLO Server\r\n"
                               f"    EnabledState={value}\r\n")
            elif cmd in ("start /system1", "stop -f /system1"):
                if mode == "refuse":
                    self.write("status=2\r\nstatus_tag=COMMAND PROCESSING FAILED\r\n"
                               "error_tag=COMMAND ERROR-UNSPECIFIED\r\n")
                else:
                    if cmd.startswith("start"):
                        self.set_power("on")
                    elif mode != "stuck":
                        self.set_power("off")
                    self.write("status=0\r\nstatus_tag=COMMAND COMPLETED\r\n")
            else:
                self.write(f"Invalid command: {cmd}\r\n")
            self.write(self.prompt)


class Telnet(socketserver.BaseRequestHandler):
    folder = ""

    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(bytes([IAC, WILL, ECHO, IAC, WILL, SGA, IAC, DO, SGA]))
        buf = bytearray()

        def read():
            while True:
                for end in (b"\r\n", b"\r\0", b"\n", b"\r"):
                    i = buf.find(end)
                    if i >= 0:
                        line = bytes(buf[:i])
                        del buf[:i + len(end)]
                        return line.decode(errors="replace")
                chunk = sock.recv(1024)
                if not chunk:
                    return None
                i = 0
                while i < len(chunk):  # drop telnet commands from the client
                    if chunk[i] == IAC and i + 1 < len(chunk):
                        i += 3 if chunk[i + 1] in (251, 252, 253, 254) else 2
                        continue
                    buf.append(chunk[i])
                    i += 1

        def write(text):
            sock.sendall(text.encode())

        def ask(prompt):
            while True:
                write(prompt)
                line = read()
                if line is None or line.strip():
                    return line

        cli = CLI(self.folder, read, write)
        for _ in range(3):
            user = ask("MP login: ")
            if user is None:
                return
            password = ask("MP password: ")
            if password is None:
                return
            if user.strip() == "admin" and password == "secret":
                cli.log("login admin")
                write("\r\n")
                cli.run()
                return
            cli.log(f"login failed for {user.strip()}")
            write("\r\nInvalid login.\r\n")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def raw_stdio(folder):
    """Bytes as the SSH channel delivers them: only LF ends a line (CR is dropped)."""
    if os.isatty(0):
        import tty

        tty.setraw(0)  # no line discipline: no CR->LF mapping, no echo, no line editing
    buf = bytearray()

    def write(text):
        os.write(1, text.encode())

    def read():
        while b"\n" not in buf:
            chunk = os.read(0, 1024)
            if not chunk:
                return None
            write(chunk.decode(errors="replace").replace("\n", "\r\n"))  # own echo
            buf.extend(chunk)
        i = buf.index(b"\n")
        line = bytes(buf[:i]).rstrip(b"\r")
        del buf[:i + 1]
        return line.decode(errors="replace")

    CLI(folder, read, write).run()


def main():
    if sys.argv[1] == "--stdio-raw":
        raw_stdio(sys.argv[2])
        return
    if sys.argv[1] == "--stdio":
        out = sys.stdout

        def write(text):
            out.write(text)
            out.flush()

        def read():
            line = sys.stdin.readline()
            return None if not line else line.rstrip("\r\n")

        CLI(sys.argv[2], read, write).run()
        return
    Telnet.folder = sys.argv[3]
    with Server(("127.0.0.1", int(sys.argv[2])), Telnet) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
