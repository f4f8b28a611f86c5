"""`agent-image/Dockerfile`: the image Vigil's cli steps run in by default in Kubernetes mode.

Docker is not needed here: the Dockerfile is parsed (continuation lines joined, comments
dropped, stages split, ARG defaults expanded the way the builder scopes them) and the
properties that keep the image reproducible and fit for a step pod are checked on the text.
Each property is a function that returns what is wrong, so the last test can show that every
one of them fails on a Dockerfile that breaks it. Neighbours: the executor's pod spec
(`vigil.executor.domain.pods`: user 65532, read-only root filesystem) and
`agent-image/README.md`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from vigil.executor.domain.pods import NON_ROOT_UID

DOCKERFILE = Path(__file__).resolve().parents[2] / "agent-image" / "Dockerfile"
# What the image is for; anything else in its final stage (a compiler, say) is a change to
# make on purpose, here too.
FINAL_PACKAGES = frozenset({"bind9-dnsutils", "ca-certificates", "curl", "jq"})
KUBECTL_PATH = "/usr/local/bin/kubectl"

_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_APT_INSTALL = re.compile(r"\bapt-get\s+install\b(?P<words>[^;&|]*)")
# A Debian version starts with a digit (or an epoch, `1:`), then letters, digits and .+~:-
_PINNED_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]*=[0-9][A-Za-z0-9.+~:-]*")
_K8S_URL = re.compile(r"https://dl\.k8s\.io/[^\s\"']*")
_PINNED_KUBECTL_URL = re.compile(r"https://dl\.k8s\.io/release/v\d+\.\d+\.\d+/bin/linux/\S+")


# --- the parser ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Instruction:
    keyword: str  # upper case: RUN, COPY, USER, …
    written: str  # the arguments as written, continuation lines joined
    text: str  # the same with the ARGs known at that point replaced by their defaults


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    image: str  # FROM's image reference, global ARGs expanded
    name: str | None
    instructions: tuple[Instruction, ...]

    def runs(self) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == "RUN"]


def logical_lines(text: str) -> list[str]:
    """One string per instruction: comments dropped, `\\`-continued lines joined."""
    lines: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    return lines


def expand(text: str, known: Mapping[str, str]) -> str:
    """`${NAME}` and `$NAME` replaced where NAME is known; the rest left as written."""
    return _VARIABLE.sub(lambda m: known.get(m[1] or m[2], m[0]), text)


def parse(text: str) -> list[Stage]:
    """The stages in order. As in a build, an ARG before the first FROM is seen by FROM lines
    only, and inside a stage only once the stage declares it again."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    image: str | None = None
    name: str | None = None
    scope: dict[str, str] = {}
    body: list[Instruction] = []
    for line in logical_lines(text):
        keyword, _, written = line.partition(" ")
        keyword, written = keyword.upper(), written.strip()
        if keyword == "FROM":
            if image is not None:
                stages.append(Stage(image=image, name=name, instructions=tuple(body)))
            words = [w for w in expand(written, global_args).split() if not w.startswith("--")]
            image = words[0]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            scope, body = {}, []
            continue
        if keyword == "ARG":
            declared, has_default, default = written.partition("=")
            declared, default = declared.strip(), default.strip().strip('"')
            target = global_args if image is None else scope
            if has_default:
                target[declared] = expand(default, target)
            elif declared in global_args:
                target[declared] = global_args[declared]
        if image is not None:
            body.append(Instruction(keyword=keyword, written=written, text=expand(written, scope)))
    if image is not None:
        stages.append(Stage(image=image, name=name, instructions=tuple(body)))
    return stages


def apt_packages(run: Instruction) -> list[str]:
    """The packages one RUN gives to `apt-get install` (`name=version`, ARGs expanded)."""
    return [
        word
        for match in _APT_INSTALL.finditer(run.text)
        for word in shlex.split(match["words"])
        if not word.startswith("-")
    ]


# --- the properties: each returns what is wrong ---------------------------------------------


def unpinned_bases(stages: list[Stage]) -> list[str]:
    """Every FROM names an earlier stage, or an image at a version tag (not `latest`, not a
    moving name such as `bookworm-slim`), optionally with a sha256 digest."""
    problems: list[str] = []
    earlier: set[str] = set()
    for stage in stages:
        if stage.image not in earlier:
            reference, _, digest = stage.image.partition("@")
            tag = reference.rsplit("/", 1)[-1].partition(":")[2]
            if tag in {"", "latest"} or not any(c.isdigit() for c in tag):
                problems.append(f"FROM {stage.image}: not pinned to a version tag")
            if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                problems.append(f"FROM {stage.image}: the digest is not a sha256")
        if stage.name:
            earlier.add(stage.name)
    return problems


def unpinned_packages(stages: list[Stage]) -> list[str]:
    """Every apt package is installed at an exact version (an ARG the stage did not declare
    again would reach apt as `name=` and fail the build; it fails here first)."""
    return [
        f"apt package {package!r} is not pinned to a version"
        for stage in stages
        for run in stage.runs()
        for package in apt_packages(run)
        if not _PINNED_PACKAGE.fullmatch(package)
    ]


def untidy_apt(stages: list[Stage]) -> list[str]:
    """Each RUN that installs updates the lists, skips recommends and removes the lists."""
    problems: list[str] = []
    for stage in stages:
        for run in stage.runs():
            if "apt-get install" not in run.text:
                continue
            if "apt-get update" not in run.text:
                problems.append("apt-get install without apt-get update in the same RUN")
            if "--no-install-recommends" not in run.text:
                problems.append("apt-get install without --no-install-recommends")
            if "rm -rf /var/lib/apt/lists/*" not in run.text:
                problems.append("apt lists are left in the layer that installs")
    return problems


def unverified_kubectl(stages: list[Stage]) -> list[str]:
    """kubectl comes from dl.k8s.io at the X.Y.Z version of ARG KUBECTL_VERSION, and the RUN
    that downloads it checks its sha256 before anything else can use it."""
    downloads = [run for stage in stages for run in stage.runs() if "dl.k8s.io" in run.text]
    if not downloads:
        return ["no RUN downloads kubectl from dl.k8s.io"]
    problems: list[str] = []
    for run in downloads:
        problems.extend(
            f"{url} does not use ARG KUBECTL_VERSION"
            for url in _K8S_URL.findall(run.written)
            if "${KUBECTL_VERSION}" not in url
        )
        problems.extend(
            f"{url} is not at an exact X.Y.Z release"
            for url in _K8S_URL.findall(run.text)
            if not _PINNED_KUBECTL_URL.fullmatch(url)
        )
        if not re.search(r"\bsha256sum (--check|-c)\b", run.text):
            problems.append("the RUN that downloads kubectl does not check its sha256")
    return problems


def missing_tools(stages: list[Stage]) -> list[str]:
    """The final stage installs exactly curl, jq, dig (bind9-dnsutils) and the CA bundle, and
    copies kubectl onto the PATH from the stage that downloaded and checked it."""
    final = stages[-1]
    problems: list[str] = []
    installed = {p.partition("=")[0] for run in final.runs() for p in apt_packages(run)}
    if installed != FINAL_PACKAGES:
        problems.append(f"the final stage installs {sorted(installed)}")
    downloaders = {s.name for s in stages if any("dl.k8s.io" in r.text for r in s.runs())}
    copies = [
        i.text.split()
        for i in final.instructions
        if i.keyword == "COPY" and i.text.startswith("--from=")
    ]
    if not any(
        words[0].removeprefix("--from=") in downloaders and words[-1] == KUBECTL_PATH
        for words in copies
    ):
        problems.append(f"the final stage copies no checked kubectl to {KUBECTL_PATH}")
    return problems


def root_or_named_user(stages: list[Stage]) -> list[str]:
    """The final stage's last USER is numeric (runAsNonRoot cannot check a name), not root,
    and the executor's pods' user, which owns the image's home directory."""
    users = [i.text for i in stages[-1].instructions if i.keyword == "USER"]
    if not users:
        return ["the final stage sets no USER: the image runs as root"]
    uid, _, gid = users[-1].partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        return [f"USER {users[-1]} is not numeric"]
    if int(uid) == 0 or (gid and int(gid) == 0):
        return [f"USER {users[-1]} is root"]
    if int(uid) != NON_ROOT_UID:
        return [f"USER {users[-1]} is not the executor's pod user {NON_ROOT_UID}"]
    return []


def healthchecks(stages: list[Stage]) -> list[str]:
    """No HEALTHCHECK: a step is a one-shot command, and Kubernetes ignores it anyway."""
    return [
        f"HEALTHCHECK {i.written}"
        for stage in stages
        for i in stage.instructions
        if i.keyword == "HEALTHCHECK"
    ]


def remote_adds(stages: list[Stage]) -> list[str]:
    """No ADD of a URL: it downloads with no checksum of ours and no version of ours."""
    return [
        f"ADD {i.written}"
        for stage in stages
        for i in stage.instructions
        if i.keyword == "ADD" and ("://" in i.text or "git@" in i.text)
    ]


# --- the Dockerfile as committed ------------------------------------------------------------


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


def test_the_image_is_built_in_two_stages_and_the_last_one_is_the_image(
    stages: list[Stage],
) -> None:
    assert [s.name for s in stages] == ["kubectl", None]


def test_every_base_image_is_pinned_to_a_version_tag(stages: list[Stage]) -> None:
    assert unpinned_bases(stages) == []


def test_every_apt_package_is_pinned_to_an_exact_version(stages: list[Stage]) -> None:
    assert unpinned_packages(stages) == []


def test_apt_skips_recommends_and_leaves_no_lists_behind(stages: list[Stage]) -> None:
    assert untidy_apt(stages) == []


def test_kubectl_is_pinned_by_arg_and_its_checksum_is_checked_where_it_is_downloaded(
    stages: list[Stage],
) -> None:
    assert unverified_kubectl(stages) == []


def test_the_image_has_kubectl_curl_jq_and_dig_and_nothing_else_installed(
    stages: list[Stage],
) -> None:
    assert missing_tools(stages) == []


def test_the_image_runs_as_the_numeric_non_root_user_of_the_step_pods(
    stages: list[Stage],
) -> None:
    assert root_or_named_user(stages) == []


def test_the_image_has_no_healthcheck(stages: list[Stage]) -> None:
    assert healthchecks(stages) == []


def test_nothing_is_added_from_a_url(stages: list[Stage]) -> None:
    assert remote_adds(stages) == []


# --- each property fails on a Dockerfile that breaks it ---------------------------------------

type Check = Callable[[list[Stage]], list[str]]
_BEFORE_USER = "\nUSER 65532:65532"


@pytest.mark.parametrize(
    ("check", "before", "after"),
    [
        pytest.param(unpinned_bases, "debian:12.15-slim AS", "debian:latest AS", id="latest"),
        pytest.param(
            unpinned_bases, "debian:12.15-slim\n", "debian:bookworm-slim\n", id="moving-tag"
        ),
        pytest.param(unpinned_bases, "debian:12.15-slim AS", "debian AS", id="no-tag"),
        pytest.param(unpinned_packages, '"jq=${JQ_VERSION}"', "jq", id="package-unpinned"),
        pytest.param(unpinned_packages, "ARG JQ_VERSION\n", "", id="arg-not-redeclared"),
        pytest.param(untidy_apt, "rm -rf /var/lib/apt/lists/*", "true", id="lists-kept"),
        pytest.param(untidy_apt, "--no-install-recommends", "", id="recommends"),
        pytest.param(unverified_kubectl, "sha256sum --check", "cat", id="no-checksum"),
        pytest.param(
            unverified_kubectl,
            "ARG KUBECTL_VERSION=1.36.4",
            "ARG KUBECTL_VERSION=1.36",
            id="kubectl-minor-only",
        ),
        pytest.param(
            unverified_kubectl,
            'v${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl"',
            '$(curl -fsSL https://dl.k8s.io/release/stable.txt)/bin/linux/amd64/kubectl"',
            id="kubectl-floating",
        ),
        pytest.param(
            missing_tools, '"bind9-dnsutils=${BIND9_DNSUTILS_VERSION}" \\', "\\", id="no-dig"
        ),
        pytest.param(
            missing_tools,
            '"jq=${JQ_VERSION}" \\',
            '"jq=${JQ_VERSION}" gcc=4:12.2.0-3 \\',
            id="compiler",
        ),
        pytest.param(
            missing_tools, "COPY --from=kubectl", "COPY --from=elsewhere", id="no-kubectl"
        ),
        pytest.param(root_or_named_user, _BEFORE_USER, "\nUSER vigil", id="user-name"),
        pytest.param(root_or_named_user, _BEFORE_USER, "\nUSER 0:0", id="user-root"),
        pytest.param(root_or_named_user, _BEFORE_USER, "\nUSER 1000:1000", id="user-other"),
        pytest.param(root_or_named_user, _BEFORE_USER, "\nRUN true", id="user-missing"),
        pytest.param(
            healthchecks, _BEFORE_USER, "\nHEALTHCHECK CMD true" + _BEFORE_USER, id="healthcheck"
        ),
        pytest.param(
            remote_adds,
            _BEFORE_USER,
            "\nADD https://example.com/tool /usr/local/bin/tool" + _BEFORE_USER,
            id="remote-add",
        ),
    ],
)
def test_each_property_fails_on_a_dockerfile_that_breaks_it(
    check: Check, before: str, after: str
) -> None:
    written = DOCKERFILE.read_text(encoding="utf-8")
    assert before in written, f"the Dockerfile changed: {before!r} is no longer in it"
    assert check(parse(written.replace(before, after)))
