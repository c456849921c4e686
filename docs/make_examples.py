"""Write docs/examples.md: the README's "After the run" commands and the serving examples, run now against the
project's own store, with their real output.

    python docs/make_examples.py [--image ../shared/datasets/ieee8023/images/000001-12.jpg] [--out docs/examples.md]

Run it after the main job (`covid-xray run` or `dvc repro`). Every `covid-xray` line of the README's block is run as
written (the servers, `serve` and `ui`, on a free loopback port, asked once and stopped with SIGTERM), then the
request a client sends to the served model (a PNG, a 50 MB body, a text file), and `predict`'s JSON, CSV and refusal
outputs. The page names the commit and date it was made at; `tests/system/test_first_hour.py` checks that it shows
every command the README's block has. Paths under this checkout are printed relative to it.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(sys.executable).parent
SERVERS = {"serve", "ui"}


def readme_commands() -> list[str]:
    """The `covid-xray` lines of the README's "After the run" block, comments dropped."""
    section = (ROOT / "README.md").read_text().split("\n## After the run\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    if block is None:
        raise SystemExit("README.md: no ```bash block under '## After the run'")
    return [shlex.join(shlex.split(line, comments=True)) for line in block.group(1).splitlines() if line.strip()]


def shown(text: str, scratch: Path) -> str:
    """Output as a reader sees it from the checkout: its paths relative, the temporary folder as `…`."""
    return text.replace(str(scratch), "…").replace(f"{ROOT}/", "").replace(str(ROOT), ".")


def argv(command: str) -> list[str]:
    words = shlex.split(command)
    return [str(SCRIPTS / "covid-xray") if words[0] == ".venv/bin/covid-xray" else words[0], *words[1:]]


def run(command: str, scratch: Path) -> str:
    """`$ command`, its stdout and stderr as a terminal shows them, and its exit code when not 0."""
    done = subprocess.run(argv(command), cwd=ROOT, capture_output=True, text=True, timeout=600)  # noqa: S603
    lines = [f"$ {command}", *(done.stdout + done.stderr).rstrip("\n").splitlines()]
    if done.returncode:
        lines += ["$ echo $?", str(done.returncode)]
    return shown("\n".join(lines), scratch)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - our own loopback server
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def request_body(*images: bytes) -> bytes:
    rows = [[base64.b64encode(image).decode("ascii")] for image in images]
    return json.dumps({"dataframe_split": {"columns": ["image"], "data": rows}}).encode()


def until_up(server: subprocess.Popen, url: str, seconds: int = 240) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=10).close()  # noqa: S310 - our own loopback server
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not come up: {server.communicate()[1][-2000:]}") from None
            time.sleep(1)


def serve_session(command: str, image: Path, scratch: Path) -> str:
    """The README's serve line on a free port, the client's requests, and what the server printed."""
    port = free_port()
    started = f"{command} --port {port}"
    server = subprocess.Popen(argv(started), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # noqa: S603
    url = f"http://127.0.0.1:{port}/invocations"
    lines = [f"$ {started} &"]
    try:
        until_up(server, f"http://127.0.0.1:{port}/ping")
        relative = image.resolve().relative_to(ROOT.parent.resolve())
        lines += [
            f'$ printf \'{{"dataframe_split": {{"columns": ["image"], "data": [["%s"]]}}}}\' '
            f'"$(base64 -w0 ../{relative})" > request.json',
            f"$ curl -s -X POST {url} -H 'Content-Type: application/json' -d @request.json",
        ]
        lines.append(post(url, request_body(image.read_bytes()))[1])
        lines += [
            '$ python -c \'import base64, json; print(json.dumps({"dataframe_split": {"columns": ["image"], '
            '"data": [[base64.b64encode(bytes(50_000_000)).decode()]]}}))\' > big.json',
            f"$ curl -s -w ' HTTP %{{http_code}}\\n' -X POST {url} -H 'Content-Type: application/json' -d @big.json",
        ]
        status, answer = post(url, request_body(bytes(50_000_000)))
        lines.append(f"{answer} HTTP {status}")
        status, answer = post(url, request_body(b"these are notes, not an X-ray"))
        lines += [
            "$ # a row that is not an image (request.json with a text file's base64): answered, with the reason",
            answer,
        ]
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=120)
    printed = (out + err).splitlines()
    lines += ["$ kill -TERM %1   # what covid-xray serve printed:"]
    lines += [line for line in printed if not line.startswith("INFO:")]
    lines.append(f"(and {sum(line.startswith('INFO:') for line in printed)} lines of uvicorn's INFO log)")
    return shown("\n".join(lines), scratch)


def ui_session(command: str, scratch: Path) -> str:
    port = free_port()
    started = f"{command} --port {port}"
    server = subprocess.Popen(argv(started), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # noqa: S603
    try:
        until_up(server, f"http://127.0.0.1:{port}/health")
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=120)
    lines = [f"$ {started} &", *out.splitlines(), *err.splitlines(), "$ kill -TERM %1"]
    return shown("\n".join(lines), scratch)


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()  # noqa: S603, S607

    dirty = " with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return f"commit {git('rev-parse', '--short', 'HEAD')}{dirty}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs/examples.md"))
    args = parser.parse_args()
    commands = readme_commands()
    predicted = next(c for c in commands if shlex.split(c)[1] == "predict")
    image = ROOT / shlex.split(predicted)[-1]
    alias = shlex.split(predicted)[shlex.split(predicted).index("--alias") + 1]
    sections = []
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        for command in commands:
            name = shlex.split(command)[1]
            if name == "serve":
                sections.append((f"`covid-xray {name}`", serve_session(command, image, scratch)))
            elif name == "ui":
                sections.append((f"`covid-xray {name}`", ui_session(command, scratch)))
            else:
                sections.append((f"`covid-xray {name}`", run(command, scratch)))
        (scratch / "notes.png").write_text("these are notes, not an X-ray\n")
        (scratch / "list.csv").write_text(f"path,note\n{image},admission\n{scratch / 'notes.png'},follow-up\n")
        base = f".venv/bin/covid-xray predict --alias {alias}"
        extra = [
            run(
                f"{base} --json {shlex.quote(str(image.relative_to(ROOT)))} {scratch / 'notes.png'} missing.png",
                scratch,
            ),
            run(f"{base} {scratch / 'list.csv'} --output {scratch / 'answers.csv'}", scratch)
            + "\n$ cat …/answers.csv\n"
            + shown((scratch / "answers.csv").read_text().rstrip("\n"), scratch),
            run(f"{base} {scratch / 'notes.png'} missing.png", scratch),
        ]
        sections.append(("`predict`: JSON lines, a CSV list to a CSV file, nothing readable", "\n\n".join(extra)))
    made = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        "# Examples: the commands after a run, with their real output",
        "",
        f"Generated by `python docs/make_examples.py` on {made} at {commit()}, against the project's own store after",
        "the main job (`dvc repro`); do not edit by hand. The first sections are the README's",
        '["After the run"](../README.md#after-the-run) block, run as written (servers on a free port, then stopped).',
        "",
    ]
    for title, text in sections:
        lines += [f"## {title}", "", "```console", text, "```", ""]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
