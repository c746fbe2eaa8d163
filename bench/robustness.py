"""Robustness campaigns: hostile input through the controller's own code paths, counted per family.

    python -m songbird.bench.robustness [--quick] [--seed S] [--per-family N] [--campaign NAME]
    songbird bench robustness [--quick] ...

The ``policies`` campaign generates hostile policy files, by mutation of valid policies and by family
(huge numbers, deep nesting, YAML aliases, bad tags, wrong types, huge strings, bad labels, unknown keys,
binary bytes), and runs each through the two paths a policy takes: `songbird validate`'s
(`controller.cli.validate_file`, on a real file) and the daemon's (`config.loader.load_policy_configmap`,
on the ConfigMap object). A case is **handled** when both paths give a valid policy or an error that names
the field (a `PolicyError` with a path; `validate`'s line starts with the file name) with a bounded
message (at most `LONGEST_MESSAGE` characters), each within `CASE_DEADLINE` (1 s). Anything else (another
exception, an error with no path, an unbounded message, a slow case) is **failed**, and the first failure of
each family is printed. The full run tries 1,200 policies (120 per family), ``--quick`` 200 (20 per family,
a few seconds, run in CI by ``make bench-quick``). Generation is seeded, so a run repeats exactly.

`CAMPAIGNS` maps a campaign name to a function from the options to one `Row` per family; another campaign
(for instance Prometheus fault modes) is one more function and one more entry. The exit status is 1 when
any case of any campaign failed.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from songbird.config.errors import PolicyError
from songbird.config.loader import load_policy_configmap
from songbird.config.policy import POLICY_KEY
from songbird.controller.cli import validate_file

CASE_DEADLINE = 1.0  # seconds per path and case
LONGEST_MESSAGE = 1500  # characters of one error line (the loader bounds its messages to about 1,400)
FULL_PER_FAMILY = 120
QUICK_PER_FAMILY = 20


@dataclass(frozen=True, kw_only=True)
class Options:
    quick: bool = False
    seed: int = 1
    per_family: int | None = None

    @property
    def count(self) -> int:
        return self.per_family or (QUICK_PER_FAMILY if self.quick else FULL_PER_FAMILY)


@dataclass(kw_only=True)
class Row:
    """One family of one campaign: how many cases were tried, handled and failed."""

    family: str
    tried: int = 0
    handled: int = 0
    failed: int = 0
    valid: int = 0  # of the handled cases, those that loaded as a valid policy
    slowest: float = 0.0  # seconds
    failures: list[str] = field(default_factory=list)


# -- the policies campaign ------------------------------------------------------------------------------

VALID_POLICIES = [
    "ingress: nginx\ncanary: {deployment: v2, service: v2}\nsteps: [50]\n",
    """
ingress: nginx
canary: {deployment: nginx-v2, service: nginx-v2}
stable: {deployment: nginx-v1}
steps: [10, 20, 40, 60, 80]
interval: 1m
routing:
  header: {name: Region, value: always}
  cookie: canary
  sticky: false
replicas: {mode: proportional, min: 1, total: 10}
placement: {nodeSelector: {dtype: secondary, kubernetes.io/os: linux}}
analysis:
  prometheus: {url: http://prometheus.monitoring:9090, timeout: 5s}
  cadence: 15s
  window: 1m
  minRequests: 100
  metrics:
    - {name: error-rate, max: 0.01}
    - {name: latency, quantile: 0.99, max: 0.5}
    - {name: queue-depth, query: 'sum(my_metric{namespace="{{ namespace }}"})', max: 10}
  failureLimit: 2
  errorDeadline: 5m
  compare: {tolerance: 1.2, badRatio: 2, falseRollback: 0.01, missedRegression: 0.05, maxWait: 10m}
promotion: {scaleDownDelay: 30s}
""",
]
NUMERIC_PATHS = [
    ("replicas", "total"),
    ("replicas", "min"),
    ("replicas", "canary"),
    ("analysis", "minRequests"),
    ("analysis", "failureLimit"),
    ("analysis", "compare", "tolerance"),
    ("analysis", "compare", "badRatio"),
    ("analysis", "compare", "falseRollback"),
]
DURATION_PATHS = [
    ("interval",),
    ("analysis", "cadence"),
    ("analysis", "window"),
    ("analysis", "errorDeadline"),
    ("analysis", "prometheus", "timeout"),
    ("analysis", "compare", "maxWait"),
    ("promotion", "scaleDownDelay"),
]
STRING_PATHS = [
    ("ingress",),
    ("canary", "deployment"),
    ("canary", "service"),
    ("stable", "deployment"),
    ("routing", "cookie"),
    ("routing", "header", "name"),
    ("routing", "header", "value"),
    ("analysis", "prometheus", "url"),
]
ALL_PATHS = NUMERIC_PATHS + DURATION_PATHS + STRING_PATHS + [("steps",), ("analysis", "metrics")]


def _base(rng: random.Random) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(rng.choice(VALID_POLICIES))
    return data


def _set(data: dict[str, Any], path: Sequence[str], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    holder = out
    for key in path[:-1]:
        if not isinstance(holder.get(key), dict):
            holder[key] = {}
        holder = holder[key]
    holder[path[-1]] = value
    return out


def _dump(data: Any) -> bytes:
    return yaml.safe_dump(data, sort_keys=False, width=1 << 20).encode()


def _huge_number(rng: random.Random) -> Any:
    return rng.choice(
        [
            int("9" * rng.randint(20, 4000)),
            -int("9" * rng.randint(20, 400)),
            2**31,
            2**63,
            10**308 * 10,
            1e308,
            -1e308,
            float("inf"),
            float("-inf"),
            float("nan"),
            5e-324,
            -1,
            0,
        ]
    )


def _hostile_scalar(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            True,
            "",
            " ",
            "\u202e\u0000",
            "x" * rng.randint(100, 70_000),
            _huge_number(rng),
            [],
            {},
            [1, [2, [3]]],
            {"a": {"b": "c"}},
            "1h" * rng.randint(10, 10_000),
            "9" * rng.randint(20, 600) + "s",
            "-5s",
            "nan",
            ".inf",
            "{{ namespace }}",
            'x"} or vector(1) #',
        ]
    )


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, (*prefix, i))
    return out


def mutation(rng: random.Random) -> bytes:
    """A valid policy with one to four nodes replaced, deleted or duplicated."""
    data = _base(rng)
    for _ in range(rng.randint(1, 4)):
        path = rng.choice(_paths(data)[1:])
        holder = data
        for step in path[:-1]:
            holder = holder[step]
        how = rng.random()
        if how < 0.6:
            holder[path[-1]] = _hostile_scalar(rng)
        elif how < 0.8 and isinstance(holder, dict):
            del holder[path[-1]]
        else:
            holder[path[-1]] = copy.deepcopy(data)  # the whole policy nested in itself
    return _dump(data)


def huge_numbers(rng: random.Random) -> bytes:
    path = rng.choice([*NUMERIC_PATHS, ("steps",)])
    if path == ("steps",):
        value: Any = [rng.choice([1, 10]), _huge_number(rng)]
    else:
        value = _huge_number(rng)
    text = _dump(_set(_base(rng), path, value))
    if rng.random() < 0.3:  # numbers PyYAML writes differently: exponents, signs, sexagesimal, hex
        literal = rng.choice(
            [b"1.0e+400", b"-.inf", b".NaN", b"0x" + b"f" * 300, b"1:00:00:00", b"0b" + b"1" * 500]
        )
        text = _dump(_set(_base(rng), path, "PLACEHOLDER")).replace(b"PLACEHOLDER", literal)
    return text


def deep_nesting(rng: random.Random) -> bytes:
    depth = rng.choice([19, 20, 21, 50, 1000, 10_000, 30_000])
    shape = rng.randrange(4)
    if shape == 0:
        return b"[" * depth + b"]" * depth
    if shape == 1:
        return b"{a: " * depth + b"1" + b"}" * depth
    if shape == 2:
        return (
            b"".join(b"  " * i + b"a:\n" for i in range(min(depth, 3000))) + b"  " * min(depth, 3000) + b"1\n"
        )
    inner: Any = "x"
    for _ in range(min(depth, 60)):
        inner = [inner]
    return _dump(_set(_base(rng), rng.choice(ALL_PATHS), inner))


def aliases(rng: random.Random) -> bytes:
    shape = rng.randrange(4)
    if shape == 0:  # a "billion laughs" bomb: width ** depth strings if expanded
        width, depth = rng.randint(2, 10), rng.randint(3, 12)
        lines = ['a0: &a0 "lol"'] + [
            f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, depth)
        ]
        return "\n".join(lines).encode()
    if shape == 1:  # an anchor on a valid policy's node, used once
        return b"x: &c {deployment: v2, service: v2}\ningress: nginx\ncanary: *c\nsteps: [50]\n"
    if shape == 2:  # a merge key
        return b"base: &b {ingress: nginx}\n<<: *b\ncanary: {deployment: v2, service: v2}\nsteps: [50]\n"
    return b"a: *undefined\n"


BAD_TAGS = [
    "!!python/object/apply:os.system ['true']",
    "!!python/name:os.system",
    "!!python/object:__main__.X {}",
    "!!binary aGVsbG8=",
    "!!int nginx",
    "!!float fast",
    "!!bool maybe",
    "!!null x",
    "!!timestamp 2024-13-45",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "!custom 1m",
    "!<tag:example.com,2024:x> 1",
    "!!str 1m",
    "!!seq x",
    "!!map [1]",
]


def bad_tags(rng: random.Random) -> bytes:
    path = rng.choice(ALL_PATHS)
    text = _dump(_set(_base(rng), path, "PLACEHOLDER")).replace(b"PLACEHOLDER", rng.choice(BAD_TAGS).encode())
    if rng.random() < 0.2:
        text = b"%TAG !e! tag:example.com,2024:\n---\n" + text.replace(b"ingress:", b"ingress: !e!x", 1)
    return text


WRONG_TYPES: list[Any] = [None, True, 0, 1.5, "text", [], ["a", 1], {}, {"a": 1}, [[[]]]]


def wrong_types(rng: random.Random) -> bytes:
    data = _base(rng)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(
            [*ALL_PATHS, ("canary",), ("analysis",), ("placement",), ("routing",), ("analysis", "compare")]
        )
        data = _set(data, path, rng.choice(WRONG_TYPES))
    if rng.random() < 0.1:
        return _dump(rng.choice(WRONG_TYPES))
    return _dump(data)


def huge_strings(rng: random.Random) -> bytes:
    size = rng.choice([64, 254, 1025, 4097, 60_000, 70_000, 2 * 1024 * 1024])
    filler = rng.choice(["a", "é", "\U0001f426", "a-", "1"])
    value = (filler * size)[:size]
    path = rng.choice([*STRING_PATHS, *DURATION_PATHS, ("analysis", "metrics")])
    if path == ("analysis", "metrics"):
        template = _set(_base(rng), path, [{"name": "q", "query": "PLACEHOLDER", "max": 1}])
    else:
        template = _set(_base(rng), path, "PLACEHOLDER")
    # Substituted after dumping: PyYAML's emitter takes seconds over a string of megabytes.
    return _dump(template).replace(b"PLACEHOLDER", f"'{value}'".encode())


def bad_labels(rng: random.Random) -> bytes:
    keys: list[Any] = [
        "",
        "/",
        "a/",
        "/a",
        "a/b/c",
        "-a",
        "a-",
        "a b",
        "UPPER.io/x",
        "a" * 64,
        "a" * 254 + ".io/x",
        "é",
        "kubernetes.io/" + "b" * 64,
        1,
        True,
        None,
    ]
    values: list[Any] = ["", "-x", "x-", "a b", "a" * 64, "é", 5, True, None, ["x"], {"a": "b"}, "ok"]
    selector = {rng.choice(keys): rng.choice(values) for _ in range(rng.randint(1, 4))}
    if rng.random() < 0.1:
        selector = {f"k{i}": "v" for i in range(rng.choice([33, 1000]))}
    return _dump(_set(_base(rng), ("placement", "nodeSelector"), selector))


def unknown_keys(rng: random.Random) -> bytes:
    data = _base(rng)
    key = rng.choice(
        ["cadense", "Ingress", "steps ", "", "\u00e9", "x" * rng.randint(64, 1000), "<<", "1", "null"]
    )
    where = rng.choice([(), ("analysis",), ("canary",), ("analysis", "compare"), ("replicas",), ("routing",)])
    return _dump(_set(data, (*where, key), rng.choice(WRONG_TYPES)))


def binary(rng: random.Random) -> bytes:
    shape = rng.randrange(5)
    if shape == 0:
        return rng.randbytes(rng.randint(0, 4096))
    if shape == 1:
        return rng.choice(VALID_POLICIES).encode("utf-16")
    if shape == 2:
        text = bytearray(rng.choice(VALID_POLICIES).encode())
        text[rng.randrange(len(text))] = rng.choice([0x00, 0x80, 0xFF, 0x1B, 0x7F])
        return bytes(text)
    if shape == 3:
        return b"\x89PNG\r\n\x1a\n" + rng.randbytes(64)
    return b"\xef\xbb\xbf" + rng.choice(VALID_POLICIES).encode()  # a BOM before a valid policy


FAMILIES: dict[str, Callable[[random.Random], bytes]] = {
    "mutation": mutation,
    "huge numbers": huge_numbers,
    "deep nesting": deep_nesting,
    "aliases": aliases,
    "bad tags": bad_tags,
    "wrong types": wrong_types,
    "huge strings": huge_strings,
    "bad labels": bad_labels,
    "unknown keys": unknown_keys,
    "binary": binary,
}


def _timed(fn: Callable[[], Any]) -> tuple[Any, BaseException | None, float]:
    began = time.perf_counter()
    try:
        result, error = fn(), None
    except Exception as exc:  # counted, never raised: the point is to see every failure
        result, error = None, exc
    return result, error, time.perf_counter() - began


def check_policy(content: bytes, file: Path) -> tuple[bool, str, float]:
    """(valid, problem or "", slowest seconds) of one document through validate's and the daemon's paths."""
    file.write_bytes(content)
    line, error, took_validate = _timed(lambda: validate_file(str(file)))
    if error is not None:
        return False, f"validate raised {type(error).__name__}: {str(error)[:120]}", took_validate
    if line is not None and (not line.startswith(f"{file}: ") or len(line) > LONGEST_MESSAGE or "\n" in line):
        return False, f"validate printed an unbounded or unnamed line: {line[:120]!r}", took_validate
    configmap = {
        "metadata": {"namespace": "bench", "name": "policy"},
        "data": {POLICY_KEY: content.decode("utf-8", "replace")},
    }
    policy, error, took_daemon = _timed(lambda: load_policy_configmap(configmap))
    slowest = max(took_validate, took_daemon)
    if error is not None and not isinstance(error, PolicyError):
        return False, f"the loader raised {type(error).__name__}: {str(error)[:120]}", slowest
    if isinstance(error, PolicyError) and (not error.path or len(str(error)) > LONGEST_MESSAGE):
        return False, f"an error with no path or an unbounded message: {str(error)[:120]!r}", slowest
    if slowest > CASE_DEADLINE:
        return False, f"took {slowest:.2f}s", slowest
    return line is None and policy is not None, "", slowest


def policies_campaign(options: Options) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="songbird-robustness-") as tmp:
        file = Path(tmp) / "policy.yaml"
        for i, (name, generate) in enumerate(FAMILIES.items()):
            rng = random.Random(options.seed * 1000 + i)
            row = Row(family=name)
            for _ in range(options.count):
                valid, problem, took = check_policy(generate(rng), file)
                row.tried += 1
                row.slowest = max(row.slowest, took)
                if problem:
                    row.failed += 1
                    row.failures.append(problem)
                else:
                    row.handled += 1
                    row.valid += valid
            rows.append(row)
    return rows


CAMPAIGNS: dict[str, Callable[[Options], list[Row]]] = {"policies": policies_campaign}


# -- report ----------------------------------------------------------------------------------------------


def table(campaign: str, rows: list[Row]) -> Iterator[str]:
    yield f"campaign: {campaign}"
    yield f"{'family':16} {'tried':>6} {'handled':>8} {'failed':>7} {'valid':>6} {'slowest':>9}"
    for r in rows:
        yield f"{r.family:16} {r.tried:6} {r.handled:8} {r.failed:7} {r.valid:6} {r.slowest * 1000:7.0f}ms"
    t = Row(
        family="total",
        tried=sum(r.tried for r in rows),
        handled=sum(r.handled for r in rows),
        failed=sum(r.failed for r in rows),
        valid=sum(r.valid for r in rows),
        slowest=max((r.slowest for r in rows), default=0.0),
    )
    yield f"{t.family:16} {t.tried:6} {t.handled:8} {t.failed:7} {t.valid:6} {t.slowest * 1000:7.0f}ms"
    for r in rows:
        if r.failures:
            yield f"first failure in {r.family!r}: {r.failures[0]}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="songbird bench robustness", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"{QUICK_PER_FAMILY} cases per family (CI)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--per-family", type=int, help=f"cases per family (default {FULL_PER_FAMILY})")
    p.add_argument("--campaign", choices=sorted(CAMPAIGNS), action="append", help="default: all")
    args = p.parse_args(argv)
    options = Options(quick=args.quick, seed=args.seed, per_family=args.per_family)
    failed = 0
    for name in args.campaign or list(CAMPAIGNS):
        began = time.perf_counter()
        rows = CAMPAIGNS[name](options)
        for line in table(name, rows):
            print(line)
        print(f"({time.perf_counter() - began:.1f}s, seed {options.seed})\n")
        failed += sum(r.failed for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
