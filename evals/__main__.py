"""`make eval`: every scenario, with the scripted model or a real one; a table of results.

    python -m evals                                   # the scripted model (deterministic)
    python -m evals --model qwen2.5:7b --base-url http://127.0.0.1:11434/v1
    python -m evals --scenario crash-loop --verbose   # one scenario, with its root cause

With a real model, a root cause that lacks the expected words is put to a judge (the same
model unless --judge-model names another on the same server), asked whether it says the
same as the expected finding. Exit status 1 when a scenario fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator

from evals.run import Judge, Verdict, investigate, scripted_models
from evals.scenario import Scenario, every
from vigil.executor.models import ChatModel

JUDGE = (
    "You grade an incident investigation. Expected root cause: {expected}\n"
    "The investigator's root cause: {answer}\n"
    "Do both name the same cause? Answer with one word: yes or no."
)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m evals", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=os.environ.get("MODEL") or None)
    parser.add_argument("--base-url", default=os.environ.get("BASE_URL") or None)
    parser.add_argument("--api-key", default=os.environ.get("API_KEY") or "none")
    parser.add_argument("--judge-model", default=None)
    parser.add_argument("--scenario", action="append", help="run only these (repeatable)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per scenario")
    parser.add_argument("--verbose", action="store_true", help="print each root cause")
    arguments = parser.parse_args(argv)
    if bool(arguments.model) != bool(arguments.base_url):
        parser.error("a real model needs both --model and --base-url (or MODEL and BASE_URL)")
    return arguments


@contextlib.asynccontextmanager
async def _real(arguments: argparse.Namespace) -> AsyncIterator[tuple[list[ChatModel], Judge]]:
    import openai

    from vigil.executor.adapters.openai_chat import OpenAIChatModel

    model = OpenAIChatModel(
        base_url=arguments.base_url,
        model=arguments.model,
        api_key=arguments.api_key,
        timeout=arguments.timeout,
    )
    judge_client = openai.AsyncOpenAI(base_url=arguments.base_url, api_key=arguments.api_key)

    async def judge(expected: str, answer: str) -> bool:
        reply = await judge_client.chat.completions.create(
            model=arguments.judge_model or arguments.model,
            messages=[{"role": "user", "content": JUDGE.format(expected=expected, answer=answer)}],
            max_tokens=5,
        )
        text = (reply.choices[0].message.content or "").strip().lower()
        return text.startswith("yes")

    try:
        yield [model], judge
    finally:
        await model.close()
        await judge_client.close()


async def _one(scenario: Scenario, arguments: argparse.Namespace) -> Verdict:
    if arguments.model:
        async with _real(arguments) as (models, judge):
            return await investigate(
                scenario, models, judge=judge, timeout_seconds=arguments.timeout
            )
    async with scripted_models(scenario) as (models, _):
        return await investigate(scenario, models, timeout_seconds=arguments.timeout)


def table(verdicts: list[Verdict], model: str) -> str:
    rows = [f"model: {model}", "", "| scenario | pass | tokens | turns | seconds | failed checks |"]
    rows.append("|---|---|---:|---:|---:|---|")
    for v in verdicts:
        failed = "; ".join(f"{check}: {why}" for check, why in v.problems.items()) or (
            "(judge accepted the root cause)" if v.judged else ""
        )
        mark = "yes" if v.passed else "NO"
        rows.append(
            f"| {v.scenario} | {mark} | {v.tokens} | {v.turns} | {v.seconds:.1f} | {failed} |"
        )
    passed = sum(v.passed for v in verdicts)
    rows += ["", f"{passed} of {len(verdicts)} scenarios passed"]
    return "\n".join(rows)


async def _main(arguments: argparse.Namespace) -> int:
    scenarios = [s for s in every() if not arguments.scenario or s.name in arguments.scenario]
    if not scenarios:
        print(f"no scenario named {', '.join(arguments.scenario)}", file=sys.stderr)
        return 2
    verdicts = []
    for scenario in scenarios:
        verdict = await _one(scenario, arguments)
        verdicts.append(verdict)
        if arguments.verbose:
            print(f"{scenario.name}: {verdict.root_cause or '(no finding)'}", file=sys.stderr)
    print(table(verdicts, arguments.model or "scripted (the scenario's own script)"))
    return 0 if all(v.passed for v in verdicts) else 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_main(_arguments(argv)))


if __name__ == "__main__":
    sys.exit(main())
