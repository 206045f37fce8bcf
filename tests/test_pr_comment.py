"""The pull-request comment: whole, within GitHub's limit, balanced, grouped; the CI templates."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from reconciler.cli.comment import GITHUB_LIMIT, MARKER, comment
from reconciler.gitops.compare import Comparison, FileDiff, RedirectDiff, compare

ROOT = Path(__file__).resolve().parent.parent


def balanced(md: str) -> bool:
    """Every code fence closed by one of its length, every <details> closed, in order."""
    fence = None
    depth = 0
    for line in md.splitlines():
        if fence is not None:
            if line.strip() == fence:
                fence = None
            continue
        m = re.match(r"^(`{3,})", line)
        if m:
            fence = m.group(1)
            continue
        depth += line.count("<details>") - line.count("</details>")
        if depth < 0:
            return False
    return fence is None and depth == 0


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e", *args],
                   check=True, capture_output=True)


def big_fleet(repo: Path, phones: int, customers: int = 50) -> None:
    for sub in ("profiles", "customers", "devices"):
        (repo / sub).mkdir(parents=True)
    (repo / "provisioning.yaml").write_text(
        "fleet: {name: big, secret: env:PROVCTL_FLEET_SECRET}\n"
        "targets:\n  local: {kind: local, root: ./out/www, base_url: 'https://prov.example/'}\n")
    (repo / "defaults.yaml").write_text(
        "params:\n  ntp: {server: pool.ntp.org}\n  timezone: Europe/Berlin\n")
    (repo / "profiles" / "desk.yaml").write_text("name: desk\nvendor: yealink\nmodels: [T46U]\n")
    for c in range(customers):
        (repo / "customers" / f"c{c:02}.yaml").write_text(
            f"id: c{c:02}\nname: Customer {c}\nsip: {{domain: pbx{c}.example.net}}\n")
        (repo / "devices" / f"c{c:02}.yaml").write_text("".join(
            f"- {{mac: '001565{c:02x}{i:04x}', model: yealink/T46U, profile: desk, "
            f"customer: c{c:02}}}\n" for i in range(phones // customers)))


@pytest.mark.integration
def test_a_fleet_wide_change_of_10000_phones_is_one_grouped_diff(tmp_path, monkeypatch):
    """Real rendering of both revisions (about 20 s of CPU): the comment is small because the
    10,000 identical diffs are one."""
    monkeypatch.setenv("PROVCTL_FLEET_SECRET", "pr-comment-test")
    repo = tmp_path / "fleet"
    big_fleet(repo, 10_000)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    defaults = repo / "defaults.yaml"
    defaults.write_text(defaults.read_text().replace("pool.ntp.org", "ntp.example.net"))
    git(repo, "commit", "-qam", "new NTP server for everyone")
    result = compare(repo, "HEAD~1", "HEAD")
    assert len(result.files) == 10_000
    md = comment(result)
    assert len(md) < GITHUB_LIMIT and balanced(md)
    assert md.startswith(MARKER + "\n")
    assert md.count("<details>") == 1 and md.count("```diff") == 1  # one diff, not 10,000
    assert ("<code>{mac}.cfg</code> — applies to 10,000 phones (c00: 200, c01: 200, c02: 200, "
            "c03: 200, c04: 200, … 45 more customer(s))") in md
    assert "-local_time.ntp_server1 = pool.ntp.org" in md
    assert "+local_time.ntp_server1 = ntp.example.net" in md
    summary = md.index("**10,000 phone(s) changed** · files: 0 created, 10,000 updated, 0 "
                       "deleted · 0 redirect change(s) · 0 refusal(s)")
    assert summary < md.index("| c00 | 200 | 0 | 200 | 0 |") < md.index("<details>")
    assert md.rstrip().endswith("</sub>") and "exit code 2" in md.splitlines()[-1]


def _distinct_changes(n: int) -> Comparison:
    """n phones whose diffs all differ, with content that tries to break the markdown."""
    files = []
    for i in range(n):
        mac = f"001565{i:06x}"
        diff = (f"--- a/abcdef…/{mac}.cfg\n+++ b/abcdef…/{mac}.cfg\n@@ -1,3 +1,3 @@\n"
                f" # ```` fences ``` inside and </details> too\n-account.1.label = User {i}\n"
                f"+account.1.label = Person {i}\n" + "".join(f" line {k}\n" for k in range(80)))
        files.append(FileDiff(f"c{i % 97:02}", mac, "local", f"{'ab' * 16}/{mac}.cfg", "changed",
                              diff))
    redirects = [RedirectDiff(f"001565{i:06x}", "none", "register") for i in range(300)]
    return Comparison("origin/main", "HEAD", files, redirects,
                      refusals=["target local: would delete 3 of 4 files (75.0%)"])


def test_the_budget_holds_with_10000_distinct_diffs_footer_included():
    md = comment(_distinct_changes(10_000))
    assert len(md) < GITHUB_LIMIT
    assert balanced(md)
    assert md.startswith(MARKER) and md.rstrip().endswith("</sub>")
    assert "**10,000 phone(s) changed**" in md and ":no_entry: **Refused:**" in md
    assert "| … 250 more | | |" in md  # redirects capped
    shown = md.count("<details>")
    assert 0 < shown < 10_000
    assert f"_{10_000 - shown} more group(s) of diffs ({10_000 - shown:,} file(s)) not shown" in md
    assert "````diff" in md  # a fence longer than the backticks inside the content


def test_github_template_finds_its_comment_by_the_marker_and_never_cuts_bytes():
    text = (ROOT / "contrib" / "ci" / "github-actions.yml").read_text()
    steps = yaml.safe_load(text)["jobs"]["plan"]["steps"]
    script = "\n".join(s.get("run", "") for s in steps)
    assert "head -c" not in script and "--edit-last" not in script
    assert "startswith(\\\"${marker}\\\")" in script and "<!-- provctl-plan -->" in script
    install = next(s for s in steps if s.get("name") == "Install provctl")
    assert "git+https://" in install["env"]["PROVCTL_PACKAGE"]  # never the PyPI name
    plan = next(s for s in steps if s.get("name") == "Plan")
    assert "PROVCTL_FLEET_SECRET" in plan["env"]  # real, shortened tokens


class _FakeGitLab(BaseHTTPRequestHandler):
    notes: list[dict] = []
    calls: list[tuple[str, str]] = []

    def _reply(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self.calls.append(("GET", self.path))
        self._reply(self.notes if "page=1" in self.path else [])

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_POST(self) -> None:  # noqa: N802
        assert self.headers["PRIVATE-TOKEN"] == "glpat-test"
        note = {"id": len(self.notes) + 7, "body": self._body()["body"]}
        self.notes.append(note)
        self.calls.append(("POST", self.path))
        self._reply(note)

    def do_PUT(self) -> None:  # noqa: N802
        note_id = int(self.path.rsplit("/", 1)[1])
        note = next(n for n in self.notes if n["id"] == note_id)
        note["body"] = self._body()["body"]
        self.calls.append(("PUT", self.path))
        self._reply(note)

    def log_message(self, *args: object) -> None:
        pass


def test_gitlab_template_posts_a_note_even_when_validate_fails(tmp_path):
    job = yaml.safe_load((ROOT / "contrib" / "ci" / "gitlab-ci.yml").read_text())["provctl-plan"]
    script = "\n".join(job["script"])
    assert "head -c" not in script
    validate = next(s for s in job["script"] if "provctl validate" in s)
    assert "set +e" in validate and "validate.rc" in validate  # a failure does not stop the job
    poster = next(s for s in job["script"] if "urllib.request" in s)
    code = poster.split("<<'PY'\n", 1)[1].rsplit("PY", 1)[0]
    server = HTTPServer(("127.0.0.1", 0), _FakeGitLab)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**os.environ, "CI_API_V4_URL": f"http://127.0.0.1:{server.server_port}/api/v4",
           "CI_PROJECT_ID": "5", "CI_MERGE_REQUEST_IID": "12", "PROVCTL_GITLAB_TOKEN":
           "glpat-test", "CI_JOB_URL": "https://gitlab.example/job/1"}
    try:
        (tmp_path / "plan.md").write_text(f"{MARKER}\n### provctl plan\n\nbody\n")
        (tmp_path / "plan.rc").write_text("2\n")
        (tmp_path / "validate.rc").write_text("1\n")
        subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True)
        (note,) = _FakeGitLab.notes
        assert note["body"].startswith(MARKER + "\n:x: **`provctl validate` failed (exit 1)**")
        assert "### provctl plan" in note["body"]
        (tmp_path / "validate.rc").write_text("0\n")
        subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True)
        assert [c[0] for c in _FakeGitLab.calls] == ["GET", "POST", "GET", "PUT"]
        assert len(_FakeGitLab.notes) == 1 and "validate` failed" not in note["body"]
    finally:
        server.shutdown()
