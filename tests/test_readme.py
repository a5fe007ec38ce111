"""The README and docs/ are tested: every `atelier` command they show parses with the real CLI
parser, every curl example answers as its comment says on a real server, no link or path leaves
the repository and every relative link exists, the tables of model figures match the code, and
measured figures match the records of the runs they come from."""

from __future__ import annotations

import argparse
import http.server
import json
import os
import queue
import re
import shlex
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest

from atelier.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKDOWN = [README, *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.S | re.M)
ANY_BLOCK = re.compile(r"^```.*?^```", re.S | re.M)
INLINE = re.compile(r"`([^`]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
SEPARATORS = {";", "&&", "||", "|", "&"}
NOT_COMMANDS = {"atelier users/keys"}      # prose naming two command groups at once
PLACEHOLDERS = {"N": "1"}                   # a number the reader chooses (DIR, PATH, NAME... parse as they are)


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def prose(text: str) -> str:
    """The text without its code blocks (each left as as many empty lines, so line numbers hold)."""
    return ANY_BLOCK.sub(lambda block: "\n" * block.group(0).count("\n"), text)


def without_comments(text: str) -> tuple[str, str, bool]:
    """(the code, its comments, whether every quote is closed), read as a shell reads them: `#` at
    the start of a word outside quotes begins a comment, whose quotes do not count."""
    code, comments, quote, i = [], [], None, 0
    while i < len(text):
        char = text[i]
        if quote is None and char == "#" and (i == 0 or text[i - 1].isspace()):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            comments.append(text[i:end])
            i = end
            continue
        if char == "\\" and quote != "'":
            code.append(text[i:i + 2])
            i += 2
            continue
        if char in "'\"" and quote in (None, char):
            quote = None if quote else char
        code.append(char)
        i += 1
    return "".join(code), " ".join(comments), quote is None


def shell_commands(path: Path):
    """(where, words, comment) for each command of the file's shell blocks: continuation lines
    joined, a quoted string may span lines, `#` starts a comment."""
    text = path.read_text()
    for block in SHELL_BLOCK.finditer(text):
        first = line_of(text, block.start(1))
        pending, start = "", first
        for number, line in enumerate(block.group(1).split("\n"), start=first):
            if not pending:
                start = number
            pending += line + "\n"
            code, comment, closed = without_comments(pending)
            if not closed or code.endswith("\\\n"):
                continue                    # a quoted string or a continuation goes on over the next line
            pending = ""
            lexer = shlex.shlex(code.replace("\\\n", " "), posix=True, punctuation_chars=";&|")
            lexer.whitespace_split, lexer.commenters = True, ""
            words = list(lexer)
            if words:
                yield f"{rel(path)}:{start}", words, comment


def inline_commands(path: Path):
    """(where, words) of each inline code span, outside code blocks, that is an `atelier` command."""
    text = prose(path.read_text())
    for span in INLINE.finditer(text):
        words = span.group(1).split()
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words = words[1:]
        if words[:1] in (["atelier"], [".venv/bin/atelier"]) and " ".join(words) not in NOT_COMMANDS:
            words = [PLACEHOLDERS.get(word.strip("[]"), word.strip("[]")) for word in words]   # `[--load]`: optional
            yield f"{rel(path)}:{line_of(text, span.start())}", words


def atelier_arguments(words: list[str]) -> list[list[str]]:
    """The arguments of each `atelier` call in one shell command (`a; b`, `a && b`; through
    `.venv/bin/atelier`, `python -m atelier` or `torchrun ... -m atelier`)."""
    calls, current = [], []
    for word in [*words, ";"]:
        if word not in SEPARATORS:
            current.append(word)
            continue
        while current and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", current[0]):
            current = current[1:]               # VAR=value before the command
        current = [PLACEHOLDERS.get(word, word) for word in current]
        module = current.index("-m") + 1 if "-m" in current else None
        if current and Path(current[0]).name == "atelier":
            calls.append(current[1:])
        elif module is not None and current[module:module + 1] == ["atelier"]:
            calls.append(current[module + 1:])
        current = []
    return calls


class ParseError(Exception):
    pass


def subparsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from subparsers(child)


@pytest.fixture
def parser(monkeypatch):
    """The real `atelier` parser, raising ParseError with argparse's message instead of exiting,
    and taking only whole option names: a renamed `--negative` must not pass as short for its new
    name (the CLI itself accepts abbreviations; the docs should not rely on them)."""
    def error(self, message):
        raise ParseError(f"{self.prog}: {message}")
    monkeypatch.setattr(argparse.ArgumentParser, "error", error)
    built = build_parser()
    for each in subparsers(built):
        each.allow_abbrev = False
    return built


def test_every_atelier_command_in_the_docs_parses(parser):
    failures, parsed, commands = [], 0, set()
    for path in MARKDOWN:
        for where, words, _ in shell_commands(path):
            for arguments in atelier_arguments(words):
                try:
                    commands.add(parser.parse_args(arguments).command)
                    parsed += 1
                except ParseError as error:
                    failures.append(f"{where}: atelier {shlex.join(arguments)}\n    {error}")
        for where, words in inline_commands(path):
            try:
                commands.add(parser.parse_args(words[1:]).command)
                parsed += 1
            except ParseError as error:
                if "the following arguments are required" not in str(error):    # prose may name a command alone
                    failures.append(f"{where}: {shlex.join(words)}\n    {error}")
    assert not failures, "commands in the docs that the CLI refuses:\n" + "\n".join(failures)
    assert parsed >= 60, f"only {parsed} atelier commands found: is the extraction broken?"
    known = set(next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction)).choices)
    assert not known - commands, f"commands the docs never show: {sorted(known - commands)}"


def test_the_extraction_reads_what_a_shell_would(tmp_path, monkeypatch):
    """Continuations, quotes over several lines, comments (with quotes in them), `;`, `&&`,
    VAR=value and `-m atelier`."""
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    path = tmp_path / "probe.md"
    path.write_text("```bash\nOMP_WAIT_POLICY=PASSIVE atelier keys list; atelier users create bob  # bob's\n"
                    "scripts/setup.sh && .venv/bin/atelier serve --port 8000\n"
                    "torchrun --nproc_per_node 8 -m atelier train model \\\n    --preset xl\n"
                    "# a line of comment only, with a ' in it\n"
                    "curl -d '{\"a\": 1,\n  \"b\": \"# not a comment\"}' \"x y\"#z  # 202 yes\n```\n")
    found = list(shell_commands(path))
    assert [atelier_arguments(words) for _, words, _ in found[:3]] == [
        [["keys", "list"], ["users", "create", "bob"]], [["serve", "--port", "8000"]],
        [["train", "model", "--preset", "xl"]]]
    assert found[0][2] == "# bob's"
    assert found[3][1] == ["curl", "-d", '{"a": 1,\n  "b": "# not a comment"}', "x y#z"] and found[3][2] == "# 202 yes"
    assert [where for where, _, _ in found] == [f"probe.md:{n}" for n in (2, 3, 4, 7)]


# The curl examples, on a real server -------------------------------------------------------------

class GatedPipe:
    """The test pipeline, whose generation waits while `gate` is closed: a job that stays queued or
    running for as long as the test needs it to (the cancel example)."""

    def __init__(self, pipe):
        self._pipe, self.gate = pipe, threading.Event()
        self.gate.set()

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def generate(self, requests, progress=False):
        self.gate.wait(timeout=60)
        return self._pipe.generate(requests, progress=progress)


@pytest.fixture(scope="module")
def hooks():
    """A webhook receiver on loopback: (its URL, a queue of (headers, body) it was sent)."""
    received = queue.Queue()

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.put((dict(self.headers), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/atelier", received
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def live(pipe, tmp_path_factory):
    from atelier.server.config import ServerSettings
    from tests.api_server import start_server

    gated = GatedPipe(pipe)
    settings = ServerSettings(data=tmp_path_factory.mktemp("data"), threads=1, rate_limit=100_000,
                              webhook_allow_private=True, webhook_retry_delay=0.2)
    server = start_server(settings, gated)
    yield server, gated
    gated.gate.set()
    server.stop()


def curl_examples():
    return [(where, words, comment) for path in MARKDOWN for where, words, comment in shell_commands(path)
            if words[0] == "curl"]


@pytest.fixture(scope="module")
def curl():
    """curl, as the reader runs it; skipped loudly where it is missing, failed on CI."""
    if shutil.which("curl") is None:
        message = "THE README'S CURL EXAMPLES DID NOT RUN: curl is not installed (apt-get install curl)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return shutil.which("curl")


def test_the_curl_examples_answer_as_documented(curl, live, hooks):
    from atelier.server.jobs.webhooks import verify

    server, gated = live
    key = server.add_user("reader")
    hook_url, received = hooks
    examples = curl_examples()
    assert len(examples) >= 7, examples
    address = server.url.removeprefix("http://")
    first_job, secret = None, None

    def run(where, words, job):
        text = [word.replace("$KEY", key).replace("localhost:8000", address)
                .replace("https://example.com/hooks/atelier", hook_url) for word in words]
        if any("job_..." in word for word in text):
            assert job is not None, f"{where}: an example uses job_... before one creates a job"
            text = [word.replace("job_...", job) for word in text]
        leftover = [word for word in text if "..." in word or "$" in word]
        assert not leftover, f"{where}: placeholders this test does not fill: {leftover}"
        done = subprocess.run([*text, "--max-time", "60", "-w", "\n%{http_code}"], capture_output=True, text=True,
                              timeout=90)
        body, _, status = done.stdout.rpartition("\n")
        assert done.returncode == 0, f"{where}: curl failed: {done.stderr}"
        return int(status), body

    for where, words, comment in examples:
        line = " ".join(words)
        documented = re.match(r"#\s*(\d{3})\b", comment)
        job = first_job
        if "/cancel" in line:
            gated.gate.clear()          # a job that cannot end before the cancel arrives
            request = urllib.request.Request(server.url + "/v1/jobs", data=json.dumps(
                {"task": "text_to_image", "input": {"prompt": "a red star"}}).encode(), headers={
                "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                job = json.load(response)["id"]
        try:
            status, body = run(where, words, job)
        finally:
            gated.gate.set()
        assert 200 <= status < 300, f"{where}: HTTP {status}: {body}"
        assert not documented or status == int(documented.group(1)), f"{where}: HTTP {status}, not as its comment " \
                                                                      f"says ({comment}): {body}"
        if "/events" in line:
            assert "event: succeeded" in body, f"{where}: the stream did not end with the job: {body}"
            continue
        answer = json.loads(body)
        if first_job is None:
            assert answer["object"] == "job" and answer["id"].startswith("job_"), f"{where}: {answer}"
            first_job = answer["id"]
        if "/cancel" in line:
            assert answer["status"] == "canceled", f"{where}: {answer}"
        secret = answer.get("secret", secret)
    assert secret is not None, "no example fetches the webhook secret"
    headers, body = received.get(timeout=30)
    verify(secret, headers, body)       # the way the README says a receiver checks it
    assert json.loads(body)["type"] == "job.succeeded" and json.loads(body)["data"]["id"] == first_job


# Links and paths ----------------------------------------------------------------------------------

def link_problems(path: Path, tracked: set[str]) -> list[str]:
    """What in one Markdown file points outside the repository, or at a file of it that is not there."""
    text, problems = path.read_text(), []

    def problem(match, message):
        problems.append(f"{rel(path)}:{line_of(text, match.start())}: {message}")

    for match in re.finditer(r"(?<![\w.])(?:\.\./)+[\w./-]*", text):
        if not (path.parent / match.group(0)).resolve().is_relative_to(ROOT):
            problem(match, f"{match.group(0)} is outside the repository")
    for match in re.finditer(r"(?<![\w.-])shared/", text):
        problem(match, "names a shared/ folder, which is outside the repository")
    for match in LINK.finditer(text):
        target = match.group(1)
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue                    # http(s), mailto; a heading of the same page
        resolved = (path.parent / target.split("#")[0]).resolve()
        if target.startswith("/") or not resolved.is_relative_to(ROOT):
            problem(match, f"link {target} leaves the repository")
        elif not resolved.exists():
            problem(match, f"link {target} does not exist")
    for match in INLINE.finditer(prose(text)):     # `atelier/model/info.py`, `atelier/weights/default/`, ...
        word = match.group(1)
        if re.fullmatch(r"[\w.-]+(/[\w.-]+)+/?", word) and word.split("/")[0] in tracked \
                and not (ROOT / word).exists():
            problem(match, f"`{word}` names a file of the repository that does not exist")
    return problems


def test_no_link_or_path_leaves_the_repository_and_every_link_exists():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    tracked = {line.split("/")[0] for line in files.splitlines()}       # the repository's top-level names
    problems = [problem for path in MARKDOWN for problem in link_problems(path, tracked)]
    assert not problems, "\n".join(problems)


def test_the_link_check_finds_what_leaves_or_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.png").write_bytes(b"")
    path = tmp_path / "docs" / "probe.md"
    path.write_text("[ok](there.png) [up](../docs/there.png) ![gone](missing.png) [out](../../x.md)\n"
                    "see `../shared/DESIGN.md` and `docs/absent.md`; [web](https://example.com) [abs](/etc/passwd)\n")
    found = link_problems(path, {"docs"})
    assert found == ["docs/probe.md:1: ../../x.md is outside the repository",      # (../shared/ stays inside)
                     "docs/probe.md:2: names a shared/ folder, which is outside the repository",
                     "docs/probe.md:1: link missing.png does not exist",
                     "docs/probe.md:1: link ../../x.md leaves the repository",
                     "docs/probe.md:2: link /etc/passwd leaves the repository",
                     "docs/probe.md:2: `docs/absent.md` names a file of the repository that does not exist"], found


# Tables of figures against the code ---------------------------------------------------------------

def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_the_model_info_table_matches_the_code():
    """The README's presets table, against the count `atelier model info` prints (meta device)."""
    from atelier.model.config import PRESETS
    from atelier.model.info import model_info

    text = README.read_text()
    rows = re.findall(r"^\| (\w+) \| (\d+) x (\d+)([^|]*)\| ([\d,.]+)M(?: \(([\d,.]+)M memory values\))? \| "
                      r"([\d,.]+) \((\d+)x(\d+)(?: latents)?\) \|$", text, re.M)
    assert [row[0] for row in rows] == list(PRESETS), rows
    for name, depth, width, note, parameters, memory, gflop, side, _ in rows:
        config = PRESETS[name]
        info = model_info(config)
        memory_layers = len(config.memory_blocks)
        assert (int(depth), int(width), int(side)) == (config.depth, config.width, info.latent_side), name
        words = {0: None, 1: "one memory layer", 2: "two memory layers", 3: "three memory layers"}[memory_layers]
        assert (words is None and "memory" not in note) or (words is not None and words in note), (name, note)
        assert parameters == f"{info.parameters / 1e6:,.1f}", (name, parameters, info.parameters)
        assert (memory or None) == (f"{info.memory_parameters / 1e6:,.1f}" if memory_layers else None), (name, memory)
        assert gflop == f"{info.flops_per_sample / 1e9:,.2f}", (name, gflop, info.flops_per_sample)


def test_the_scaling_plan_figures_match_the_code():
    """docs/scaling.md's xxl shape, parameters and FLOPs, against the same count."""
    from atelier.model.config import PRESETS
    from atelier.model.info import model_info

    text = (ROOT / "docs" / "scaling.md").read_text()
    config = PRESETS["xxl"]
    info = model_info(config)
    shape = re.search(r"\| shape \| (\d+) blocks, width (\d+), (\d+) heads of (\d+); product-key memory in place of "
                      r"the MLP in blocks (\d+), (\d+) and (\d+) \((\d+)\^2 = ([\d,]+) value slots each, (\d+) heads "
                      r"x top-(\d+) reads per token\)", text)
    assert shape, "the shape row of docs/scaling.md has changed form"
    assert [number(value) for value in shape.groups()] == [
        config.depth, config.width, config.heads, config.head_dim, *config.memory_blocks, config.memory_keys,
        config.memory_keys ** 2, config.memory_heads, config.memory_topk]
    parameters = re.search(r"\| parameters \| ([\d.]+)B: ([\d.]+)B dense, ([\d.]+)B memory values \|", text)
    assert parameters.groups() == (f"{info.parameters / 1e9:.2f}", f"{info.dense_parameters / 1e9:.2f}",
                                   f"{info.memory_parameters / 1e9:.2f}")
    flops = re.search(r"\((\d+)x(\d+) latents at 8x, patch (\d+): (\d+) visual \+ (\d+) text tokens\) "
                      r"\| ([\d.]+) TFLOP", text)
    assert [number(value) for value in flops.groups()[:5]] == [
        info.latent_side, info.latent_side, config.patch_size, info.visual_tokens, info.text_tokens]
    assert flops.group(6) == f"{info.flops_per_sample / 1e12:.2f}"
    training = re.search(r"\| training FLOPs per image \(forward \+ backward, about 3x\) \| about ([\d.]+) TFLOP \|",
                         text)
    assert training.group(1) == f"{3 * info.flops_per_sample / 1e12:.1f}"


def test_the_tokenizer_table_matches_the_code_and_its_run():
    """The README's encoder comparison: parameters counted from the code (meta device), steps,
    images and PSNR from the run's own record beside the weights (atelier/weights/tokenizer/comparison.json)."""
    import torch

    from atelier.tokenizer.autoencoder import Autoencoder
    from atelier.tokenizer.config import preset

    rows = re.findall(r"^\| ([\w-]+) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \| \**([\d.]+) dB\** \|$",
                      README.read_text(), re.M)
    runs = json.loads((ROOT / "atelier/weights/tokenizer/comparison.json").read_text())["rows"]
    record = {row["preset"]: row for row in runs}
    assert [row[0] for row in rows] == list(record) == ["cot-4x", "conv-4x"], rows
    for name, parameters, steps, images, psnr in rows:
        with torch.device("meta"):
            model = Autoencoder(preset(name))
        assert number(parameters) == sum(p.numel() for p in model.parameters()) == record[name]["params"], name
        assert (number(steps), number(images), psnr) == (record[name]["steps"], record[name]["images_seen"],
                                                         f"{record[name]['psnr']:.2f}"), name


def test_the_serving_tables_match_their_run():
    """docs/serving.md's batching and load tables, against the run they come from (serving_bench.json)."""
    text = (ROOT / "docs" / "serving.md").read_text()
    bench = json.loads((ROOT / "docs" / "serving_bench.json").read_text())
    rows = re.findall(r"^\| (on|off) \((\d+)\) +\| (\d+) \| ([\d.]+) \| ([\d.]+) s \| ([\d.]+) s \| ([\d.]+) \|$",
                      text, re.M)
    expected = [(mode, "8" if mode == "on" else "1", str(run["clients"]), f"{run['images_per_second']:.2f}",
                 f"{run['p50_s']:.3f}", f"{run['p99_s']:.3f}", f"{run['mean_batch']:.1f}")
                for mode in ("on", "off") for run in bench["batching"][mode]]
    assert rows == expected
    assert f"**{bench['batching']['ratio_at_most_clients']:.2f}x**" in text
    load = bench["load"]
    row = (f"| {load['clients']} | 60 | {load['requests']} | {load['jobs']} | {load['images_per_second']:.2f} | "
           f"{load['p50_s']:.3f} s | {load['p99_s']:.3f} s | {load['errors']} | {load['lost_jobs']} |")
    assert row in text.splitlines()


def test_the_default_model_figures_match_their_runs():
    """The README's figures for the shipped model, against the records in docs/models/."""
    text = " ".join(README.read_text().split())         # sentences wrap; compare with single spaces
    records = ROOT / "docs" / "models"
    images = json.loads((records / "default_eval.json").read_text())
    edits = json.loads((records / "default_edits_eval.json").read_text())
    bench = json.loads((records / "default_bench.json").read_text())
    for claim in [
        f"it scores {images['overall']:.3f} overall on the image suite (FD {images['fidelity']['fd']:.0f})",
        f"one image end to end in {bench['end_to_end_1']:.2f} s, a batch of 8 in {bench['end_to_end_8']:.2f} s, "
        f"warm-cache load {bench['load_seconds']:.2f} s",
        f"runs at {bench['sampling_1']['speedup']:.2f}x the speed of diffusers' DiT",
        f"({bench['sampling_8']['speedup']:.2f}x at batch 8)",
        f"scores it on the public edit suite: {edits['overall']:.3f} overall, adherence inside the region "
        f"{edits['region']:.3f}",
        f"{edits['psnr_outside_raw']['mean']:.1f} dB PSNR outside the mask for its raw output",
    ]:
        assert claim in text, f"the README does not say, as its record does: {claim!r}"
