"""A small Hugging Face Hub-compatible HTTP server for offline tests (stdlib only).

It implements the subset of the Hub API that `huggingface_hub` 2.x calls for creating repos, committing files,
reading repo info and trees, and downloading files (`create_repo`, `upload_folder` / `create_commit`,
`create_branch`, `create_tag`, `repo_info`, `list_repo_tree`, `list_repo_refs`, `hf_hub_download`,
`snapshot_download`, and `transformers`' `from_pretrained(repo_id)`), with the same status codes and
`X-Error-Code` / `X-Repo-Commit` / `ETag` headers the client relies on. It listens on 127.0.0.1 only.

Storage: blobs live on disk under `root/blobs/<git sha1>`; repos, branches, tags and commits are in memory. Commit
ids are 40-hex SHA-1s over a git-like commit text (tree hash, parent, message, time), so revisions behave as on the
Hub: a branch moves, a commit id is immutable, an unknown revision is `RevisionNotFound`.

Uploads: `preupload` answers `uploadMode: "regular"` for every file, so the client sends file contents inline in
the NDJSON commit (base64) and never needs Git LFS or Xet storage. This works whether or not `hf_xet` is installed:
with it, `upload_folder` goes through the pipelined uploader, which only contacts Xet for non-regular files.

Not implemented (404): pull requests, LFS / Xet uploads, tree pagination (every listing is one page), `paths-info`,
commit history, discussions. `datasets.load_dataset(repo_id)` and `HfFileSystem` need some of those.

Auth: a request is authenticated by `Authorization: Bearer <token>` with a token from `tokens` (token -> user
name). Writes need a valid token (401 otherwise); private repos are invisible without one (404 `RepoNotFound`, as
on the Hub). Any valid token may write anywhere (no organisation permissions).

Usage in tests:

    with HubServer(tmp_path / "hub", tokens={"hf_test": "tester"}) as server:
        env = {"HF_ENDPOINT": server.url, ...}   # huggingface_hub reads HF_ENDPOINT when it is imported

or by hand: `python tests/fakes/hub_server.py --root /tmp/hub --port 8765 --token hf_test`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.arrow filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a blob, which is what the Hub reports as a regular file's `oid` / ETag."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + "000Z"


class HubError(Exception):
    """An HTTP error answer: status, `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound...) and message."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    description: str
    timestamp: float
    author: str
    tree: dict[str, str]  # path -> blob oid


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created: float
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit oid
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)


class HubStore:
    """Repos, revisions and blobs. All methods are thread-safe."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.blob_dir = self.root / "blobs"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lock = threading.RLock()

    # -- blobs
    def put_blob(self, content: bytes) -> str:
        oid = git_blob_sha1(content)
        path = self.blob_dir / oid
        if not path.exists():
            tmp = path.with_suffix(f".tmp{threading.get_ident()}")
            tmp.write_bytes(content)
            tmp.replace(path)
        return oid

    def blob_path(self, oid: str) -> Path:
        return self.blob_dir / oid

    # -- repos and revisions
    def get_repo(self, repo_type: str, repo_id: str, user: str | None) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and user is None):
            raise HubError(404 if user else 401, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return repo

    def resolve(self, repo: Repo, revision: str) -> Commit:
        revision = unquote(revision)
        oid = repo.branches.get(revision) or repo.tags.get(revision)
        if oid is None and re.fullmatch(r"[0-9a-f]{40}", revision) and revision in repo.commits:
            oid = revision
        if oid is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[oid]

    def create_repo(self, repo_type: str, repo_id: str, private: bool, user: str) -> Repo:
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(409, f"You already created this {repo_type} repo: {repo_id}")
            repo = Repo(repo_type, repo_id, private, time.time())
            self.repos[(repo_type, repo_id)] = repo
            self._commit(repo, None, {".gitattributes": self.put_blob(GITATTRIBUTES)}, "initial commit", "", user)
            repo.branches["main"] = next(iter(repo.commits))
            return repo

    def _commit(self, repo: Repo, parent: Commit | None, tree: dict[str, str], message: str, description: str,
                author: str) -> Commit:
        timestamp = time.time()
        tree_hash = hashlib.sha1(json.dumps(sorted(tree.items())).encode()).hexdigest()
        text = (
            f"tree {tree_hash}\n" + (f"parent {parent.oid}\n" if parent else "")
            + f"author {author} {timestamp!r}\n\n{message}\n\n{description}"
        )
        oid = hashlib.sha1(b"commit %d\0" % len(text) + text.encode()).hexdigest()
        commit = Commit(oid, parent.oid if parent else None, message, description, timestamp, author, dict(tree))
        repo.commits[oid] = commit
        return commit

    def apply_commit(self, repo: Repo, branch: str, header: dict, operations: list[dict], author: str) -> Commit:
        with self.lock:
            branch = unquote(branch)
            if branch not in repo.branches:
                if branch in repo.tags or branch in repo.commits:
                    raise HubError(400, f"Can only commit to a branch, not to '{branch}'")
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            parent = repo.commits[repo.branches[branch]]
            expected_parent = header.get("parentCommit")
            if expected_parent is not None and expected_parent != parent.oid:
                raise HubError(412, f"Parent commit {expected_parent} is not the head of {branch} ({parent.oid})")
            tree = dict(parent.tree)
            for operation in operations:
                key, value = operation["key"], operation["value"]
                path = value["path"].lstrip("/")
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubError(400, f"Unsupported encoding {value.get('encoding')!r} for {path}")
                    tree[path] = self.put_blob(base64.b64decode(value["content"]))
                elif key == "deletedFile":
                    if path not in tree:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del tree[path]
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    for existing in [p for p in tree if p.startswith(prefix)]:
                        del tree[existing]
                elif key in ("lfsFile", "deletedEntry"):
                    raise HubError(400, f"This test server only accepts regular files (got {key} for {path})")
                else:
                    raise HubError(400, f"Unknown commit operation {key!r}")
            commit = self._commit(repo, parent, tree, header.get("summary", ""), header.get("description", ""), author)
            repo.branches[branch] = commit.oid
            return commit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    # -- plumbing
    def log_message(self, format: str, *args: Any) -> None:  # quiet; requests are recorded in server.requests
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _user(self, required: bool = False) -> str | None:
        authorization = self.headers.get("Authorization", "")
        token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else None
        if token is None:
            if required:
                raise HubError(401, "You must be authenticated to access this endpoint (no token was sent).")
            return None
        user = self.server.tokens.get(token)
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        segments = [unquote(s) for s in url.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = self._read_body() if self.command in ("POST", "PUT", "DELETE") else b""
        self.server.requests.append((self.command, url.path))
        try:
            self._route(segments, query, body)
        except HubError as error:
            headers = {"X-Error-Message": error.message, **error.headers}
            if error.code:
                headers["X-Error-Code"] = error.code
            self._json({"error": error.message}, error.status, headers)
        except Exception as error:  # a bug in the server: say so instead of hanging the client
            self._json({"error": f"test hub server error: {error!r}"}, 500)

    do_GET = do_HEAD = do_POST = do_DELETE = do_PUT = _dispatch

    # -- routing
    def _route(self, segments: list[str], query: dict[str, str], body: bytes) -> None:
        method, store = self.command, self.server.store
        if segments[:2] == ["api", "whoami-v2"]:
            user = self._user(required=True)
            return self._json({"type": "user", "name": user, "fullname": user, "orgs": [],
                               "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}})
        if segments[:2] == ["api", "agent-harnesses"]:  # huggingface_hub's user-agent registry: serve an empty one
            return self._json({"standardEnvVars": [], "harnesses": {}})
        if segments[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml(json.loads(body or b"{}"))
        if segments[:2] == ["api", "repos"] and method == "POST" and len(segments) == 3:
            return self._create_or_delete_repo(segments[2], json.loads(body or b"{}"))
        if len(segments) >= 4 and segments[0] == "api" and segments[1] in REPO_TYPES:
            repo_type, repo_id, rest = REPO_TYPES[segments[1]], "/".join(segments[2:4]), segments[4:]
            return self._repo_api(repo_type, repo_id, rest, query, body)
        # /{repo_id}/resolve/..., /datasets/{repo_id}/resolve/..., /spaces/{repo_id}/resolve/...
        repo_type = "model"
        if segments and segments[0] in ("datasets", "spaces"):
            repo_type, segments = REPO_TYPES[segments[0]], segments[1:]
        if len(segments) >= 5 and segments[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(repo_type, "/".join(segments[:2]), segments[3], "/".join(segments[4:]))
        raise HubError(404, f"Not implemented by the test hub server: {method} {self.path}")

    def _validate_yaml(self, payload: dict) -> None:
        import yaml  # PyYAML ships with huggingface_hub / transformers

        content = payload.get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, flags=re.DOTALL)
        if match is None:
            return self._json({"errors": [], "warnings": [{"message": "empty or missing yaml metadata in repo card"}]})
        try:
            metadata = yaml.safe_load(match.group(1))
        except yaml.YAMLError as error:
            return self._json({"errors": [{"message": f"Invalid YAML: {error}"}]}, 400)
        if not isinstance(metadata, dict):
            return self._json({"errors": [{"message": "YAML metadata must be a mapping"}]}, 400)
        return self._json({"errors": [], "warnings": []})

    def _create_or_delete_repo(self, action: str, payload: dict) -> None:
        user = self._user(required=True)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or user}/{payload['name']}"
        store = self.server.store
        if action == "create":
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            try:
                store.create_repo(repo_type, repo_id, private, user)
            except HubError as error:
                if error.status == 409:
                    return self._json({"error": error.message, "url": self._repo_url(repo_type, repo_id)}, 409)
                raise
            return self._json({"url": self._repo_url(repo_type, repo_id), "name": repo_id, "id": repo_id})
        if action == "delete":
            with store.lock:
                store.get_repo(repo_type, repo_id, user)
                del store.repos[(repo_type, repo_id)]
            return self._send(200)
        raise HubError(404, f"Unknown repos action {action}")

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.server.url}/{URL_PREFIX[repo_type]}{repo_id}"

    def _repo_api(self, repo_type: str, repo_id: str, rest: list[str], query: dict[str, str], body: bytes) -> None:
        method, store = self.command, self.server.store
        write = method in ("POST", "PUT", "DELETE")
        user = self._user(required=write)
        repo = store.get_repo(repo_type, repo_id, user)
        if not rest and method == "GET":
            return self._json(self._info(repo, store.resolve(repo, "main")))
        action, args = rest[0], rest[1:]
        if action == "revision" and method == "GET" and args:
            return self._json(self._info(repo, store.resolve(repo, "/".join(args))))
        if action == "tree" and method == "GET" and args:
            commit = store.resolve(repo, args[0])
            return self._json(self._tree(commit, "/".join(args[1:]), query.get("recursive", "").lower() == "true"))
        if action == "refs" and method == "GET":
            def refs(mapping, kind):
                return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": o} for n, o in sorted(mapping.items())]
            return self._json({"branches": refs(repo.branches, "heads"), "tags": refs(repo.tags, "tags"),
                               "converts": []})
        if action == "preupload" and method == "POST" and args:
            commit = store.resolve(repo, args[0])
            files = json.loads(body)["files"]
            return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                          "oid": commit.tree.get(f["path"])} for f in files],
                               "commitOid": commit.oid})
        if action == "commit" and method == "POST" and args:
            if query.get("create_pr"):
                raise HubError(400, "Pull requests are not supported by the test hub server")
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            if not lines or lines[0].get("key") != "header":
                raise HubError(400, "The first NDJSON line of a commit must be the header")
            commit = store.apply_commit(repo, args[0], lines[0]["value"], lines[1:], user)
            return self._json({"success": True, "commitOid": commit.oid, "pullRequestUrl": None,
                               "commitUrl": f"{self._repo_url(repo_type, repo_id)}/commit/{commit.oid}"})
        if action == "branch" and args and method in ("POST", "DELETE"):
            branch = "/".join(args)
            with store.lock:
                if method == "DELETE":
                    if branch not in repo.branches:
                        raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
                    del repo.branches[branch]
                    return self._json({})
                if branch in repo.branches:
                    raise HubError(409, f"Reference already exists: refs/heads/{branch}")
                starting_point = json.loads(body or b"{}").get("startingPoint") or "main"
                repo.branches[branch] = store.resolve(repo, starting_point).oid
            return self._json({})
        if action == "tag" and args and method == "POST":
            payload = json.loads(body or b"{}")
            with store.lock:
                if payload["tag"] in repo.tags:
                    raise HubError(409, f"Tag already exists: {payload['tag']}")
                repo.tags[payload["tag"]] = store.resolve(repo, "/".join(args)).oid
            return self._json({})
        raise HubError(404, f"Not implemented by the test hub server: {method} {self.path}")

    def _info(self, repo: Repo, commit: Commit) -> dict:
        import yaml

        card_data: dict = {}
        readme = commit.tree.get("README.md")
        if readme is not None:
            match = re.match(r"^---\s*\n(.*?)\n---\s*\n", self.server.store.blob_path(readme).read_text("utf-8"),
                             flags=re.DOTALL)
            if match:
                card_data = yaml.safe_load(match.group(1)) or {}
        info = {
            "_id": hashlib.sha1(f"{repo.repo_type}/{repo.repo_id}".encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": _iso(commit.timestamp),
            "createdAt": _iso(repo.created),
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": list(card_data.get("tags") or []),
            "cardData": card_data,
            "siblings": [
                {"rfilename": path, "size": self.server.store.blob_path(oid).stat().st_size, "blobId": oid}
                for path, oid in sorted(commit.tree.items())
            ],
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
            info["library_name"] = card_data.get("library_name")
            info["pipeline_tag"] = card_data.get("pipeline_tag")
        return info

    def _tree(self, commit: Commit, path: str, recursive: bool) -> list[dict]:
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in commit.tree):
            raise HubError(404, f"Path not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        entries: dict[str, dict] = {}
        for file_path, oid in sorted(commit.tree.items()):
            if not file_path.startswith(prefix):
                continue
            parts = file_path[len(prefix):].split("/")
            for depth in range(1, len(parts)):  # the folders between `path` and the file
                folder = prefix + "/".join(parts[:depth])
                entries.setdefault(folder, {"type": "directory", "path": folder,
                                            "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0})
                if not recursive:
                    break
            if recursive or len(parts) == 1:
                size = self.server.store.blob_path(oid).stat().st_size
                entries[file_path] = {"type": "file", "path": file_path, "oid": oid, "size": size}
        return list(entries.values())

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        store = self.server.store
        repo = store.get_repo(repo_type, repo_id, self._user())
        commit = store.resolve(repo, revision)
        oid = commit.tree.get(path)
        if oid is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        content = store.blob_path(oid).read_bytes()
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{oid}"', "Accept-Ranges": "bytes"}
        status = 200
        range_match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if range_match and self.command == "GET":
            start = int(range_match.group(1))
            end = int(range_match.group(2)) if range_match.group(2) else len(content) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            content, status = content[start : end + 1], 206
        self._send(status, content, headers, content_type="application/octet-stream")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    store: HubStore
    tokens: dict[str, str]
    url: str
    requests: list[tuple[str, str]]


class HubServer:
    """Runs the test Hub on 127.0.0.1 (a free port by default) in a background thread.

    Attributes:
        url: the endpoint, e.g. `http://127.0.0.1:40123` (use as `HF_ENDPOINT`).
        store: the `HubStore` (inspect repos, branches, commits directly in tests).
        requests: `(method, path)` of every request served, in order.
    """

    def __init__(self, root: str | Path, tokens: dict[str, str] | None = None, port: int = 0):
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.store = HubStore(Path(root))
        self._server.tokens = dict(tokens or {})
        self._server.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._server.requests = []
        self._thread: threading.Thread | None = None

    url = property(lambda self: self._server.url)
    store = property(lambda self: self._server.store)
    requests = property(lambda self: self._server.requests)

    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self._server.serve_forever, name="test-hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run the test Hub server on 127.0.0.1 until interrupted.")
    parser.add_argument("--root", required=True, help="folder for the blobs")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", action="append", default=[], help="accepted token (user: tester); repeatable")
    arguments = parser.parse_args()
    with HubServer(arguments.root, {token: "tester" for token in arguments.token}, arguments.port) as hub:
        print(f"HF_ENDPOINT={hub.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
