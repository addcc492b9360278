"""`python -m playground.publish OWNER/NAME`: what would be sent to the Space, with a fake Hub client."""
from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

from playground import publish
from playground.paths import MODELS_DIR, ROOT

README = "---\ntitle: Attention Playground\nsdk: gradio\napp_file: app.py\n---\n\n# Attention Playground\n"

SENT = {  # a checkout's files that belong on the Space
    "README.md": README, "app.py": "print('app')\n", "requirements.txt": "torch\n", ".gitignore": "runs/\n",
    "playground/__init__.py": "", "playground/ui/app.py": "", "assets/style.css": "body {}",
    "models/gqa/config.json": "{}", "models/gqa/card.json": "{}", "models/gqa/model.safetensors": "x" * 5000,
    "models/tokenizer/tokenizer.model": "y" * 3000, "models/tokenizer/card.json": "{}",
    "tests/test_zoo.py": "", ".ci/run": "#!/bin/sh\n",
}
LEFT_OUT = {  # what only this machine needs
    ".gitattributes": "*.bin filter=lfs",
    ".venv/lib/python3.11/site-packages/torch/__init__.py": "", ".venv/pyvenv.cfg": "",
    "playground/__pycache__/config.cpython-311.pyc": "", "playground/ui/__pycache__/app.cpython-311.pyc": "",
    "runs/user/mine/model.safetensors": "z" * 100, "runs/train.log": "", "my-models/alice/model.safetensors": "",
    ".pytest_cache/v/cache/lastfailed": "", "tests/artifacts/browser.png": "", "data/tokens/part0.bin": "",
    "models/gqa/train_state.pt": "", ".cache/huggingface/download/x": "",
    ".env": "HF_TOKEN=hf_secret\n", "notes.ipynb": "{}", "debug.log": "",  # untracked: never sent
}
TRACKED_BUT_LEFT_OUT = (".gitattributes", "models/gqa/train_state.pt")  # in git, but only this machine needs them


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A git checkout: SENT and TRACKED_BUT_LEFT_OUT committed, the rest of LEFT_OUT lying untracked beside them."""
    import subprocess

    for path, text in {**SENT, **LEFT_OUT}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-f", *SENT, *TRACKED_BUT_LEFT_OUT], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "checkout"], check=True)
    monkeypatch.setattr(publish, "USER_DIR", ROOT / "my-models")  # the page's models kept inside the checkout
    return tmp_path


class FakeApi:
    def __init__(self, error=None):
        self.calls, self.error = [], error

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        if self.error is not None:
            raise self.error
        return f"https://huggingface.co/spaces/{repo_id}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))

    def request_space_hardware(self, repo_id, hardware):
        self.calls.append(("request_space_hardware", repo_id, hardware))


def uploaded_by(kwargs) -> set[str]:
    """The files HfApi.upload_folder sends for these arguments: its own listing and filter."""
    root = Path(kwargs["folder_path"])
    files = [p.relative_to(root).as_posix() for p in sorted(root.glob("**/*")) if p.is_file()]
    allow = kwargs.get("allow_patterns")
    return set(filter_repo_objects(files, allow_patterns=allow,
                                   ignore_patterns=list(kwargs["ignore_patterns"]) + DEFAULT_IGNORE_PATTERNS))


def test_the_upload_sends_the_app_and_the_shipped_models_and_nothing_else(checkout):
    api, lines = FakeApi(), []
    sent = publish.publish("alice/playground", root=checkout, api=api, out=lines.append)
    assert {path for path, _ in sent} == set(SENT)
    [create, upload] = api.calls
    assert create == ("create_repo", "alice/playground",
                      {"repo_type": "space", "space_sdk": "gradio", "private": False, "exist_ok": True})
    assert upload[0] == "upload_folder" and upload[2]["repo_type"] == "space"
    assert uploaded_by(upload[2]) == set(SENT)  # the untracked .env, notebook and log stay on this machine
    assert upload[2]["delete_patterns"] == ["*"]  # a republish removes what the checkout no longer has
    assert any("14 files" in line for line in lines)


def test_private_and_dry_run(checkout):
    api = FakeApi()
    publish.publish("alice/playground", private=True, root=checkout, api=api, out=lambda _: None)
    assert api.calls[0][2]["private"] is True
    api, lines = FakeApi(), []
    sent = publish.publish("alice/playground", dry_run=True, root=checkout, api=api, out=lines.append)
    assert api.calls == [] and {p for p, _ in sent} == set(SENT)
    listed = [line.split()[-1] for line in lines[:-1]]
    assert sorted(listed) == sorted(SENT)
    total = sum(len(text) for text in SENT.values())
    assert lines[-1] == f"14 files, {total / 1024:.1f} kB would be uploaded to the Space alice/playground " \
                        "(dry run: nothing sent)"


def test_refusals(checkout):
    with pytest.raises(ValueError, match="OWNER/NAME"):
        publish.publish("../etc", root=checkout, api=FakeApi())
    (checkout / "app.py").unlink()
    with pytest.raises(ValueError, match="app_file 'app.py'"):
        publish.publish("alice/playground", root=checkout, api=FakeApi())
    (checkout / "README.md").write_text("# no front matter\n")
    with pytest.raises(ValueError, match="no front matter with app_file"):
        publish.publish("alice/playground", root=checkout, api=FakeApi())


def test_this_checkout_ships_its_models_and_tokenizer():
    sent = {path for path, _ in publish.plan(ROOT)}
    shipped = {p.relative_to(ROOT).as_posix() for p in MODELS_DIR.glob("*/*") if p.is_file()
               and not p.name.startswith("train_state")}
    assert shipped and shipped <= sent
    assert "models/tokenizer/tokenizer.model" in sent and "README.md" in sent
    assert not [p for p in sent if p.startswith((".git/", ".venv/", "runs/")) or "__pycache__" in p
                or p == ".gitattributes" or p.startswith("tests/artifacts/")]


def test_the_command_line(monkeypatch, capsys):
    assert publish.main(["alice/playground", "--dry-run"]) == 0
    assert "would be uploaded to the Space alice/playground" in capsys.readouterr().out
    assert publish.main(["not a space"]) == 1
    assert "OWNER/NAME" in capsys.readouterr().err
    request = httpx2.Request("POST", "https://huggingface.co/api/repos/create")
    refused = HfHubHTTPError("401 Unauthorized", response=httpx2.Response(401, request=request))
    monkeypatch.setattr(publish, "HfApi", lambda: FakeApi(refused))
    assert publish.main(["alice/playground"]) == 1
    assert "hf auth login" in capsys.readouterr().err


def test_publish_asks_for_the_hardware_it_is_given(checkout):
    api = FakeApi()
    publish.publish("alice/playground", hardware="zero-a10g", root=checkout, api=api, out=lambda _: None)
    assert api.calls[-1] == ("request_space_hardware", "alice/playground", publish.SpaceHardware.ZERO_A10G)
    with pytest.raises(ValueError, match="unknown Space hardware 'gpu-please'.*cpu-basic"):
        publish.publish("alice/playground", hardware="gpu-please", root=checkout, api=FakeApi())


def test_outside_a_git_checkout_publish_says_so(tmp_path):
    (tmp_path / "README.md").write_text(README)
    (tmp_path / "app.py").write_text("")
    with pytest.raises(ValueError, match="run it in a git checkout"):
        publish.publish("alice/playground", root=tmp_path, api=FakeApi(), dry_run=True)
