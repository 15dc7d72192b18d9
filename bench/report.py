"""Turn bench/results/*.json into the tables of docs/benchmarks.md and its latency plot.

Only the part between the RESULTS markers of docs/benchmarks.md is rewritten; the prose around
it is hand-written. Every ratio is computed here from runs of the same invocation of run.sh.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import orjson

from bench.window import write_result
from fastfeed import defaults
from tests.e2e.harness import REPO

RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
PLOT = REPO / "docs" / "benchmarks-latency.png"
BEGIN, END = "<!-- RESULTS:BEGIN (bench/report.py) -->", "<!-- RESULTS:END -->"
PCTS = ("p50_us", "p90_us", "p99_us", "p99.9_us", "max_us")
LABELS = {
    "transport": "transport limit (picows, discard)",
    "naive-sqlite": "naive SQLite (websockets, INSERT+UPDATE, WAL, NORMAL)",
    "os-write": "websockets + os.write, no fsync",
    "ff-none": "fastfeed --fsync none",
    "ff-group": "fastfeed --fsync group",
    "ff-always": "fastfeed --fsync always",
}


def load(name: str) -> Any:
    return orjson.loads((RESULTS / f"{name}.json").read_bytes())


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    disk = subprocess.run(
        ["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", "/tmp"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "disk": f"{disk} (the data dirs live in /tmp)",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return [*out, ""]


def find(runs: list[dict[str, Any]], kind: str, streams: int, rate: int | None, lat: bool) -> Any:
    for r in runs:
        if (r["kind"], r["streams"], r["rate"], r["latency_run"]) == (kind, streams, rate, lat):
            return r
    return None


def micro_rows(micro: dict[str, Any]) -> tuple[list[list[str]], dict[str, float]]:
    rows, medians = [], {}
    for b in micro["benchmarks"]:
        median_ns = b["stats"]["median"] * 1e9
        medians[b["name"]] = median_ns
        per = ""
        if "rows_per_round" in b.get("extra_info", {}):
            per = f"{b['extra_info']['rows_per_round'] / b['stats']['median']:,.0f} rows/s"
        rows.append([f"`{b['name']}`", fmt(median_ns), fmt(b["stats"]["mean"] * 1e9), per])
    return rows, medians


def ratios(
    load_doc: dict[str, Any], journal: dict[str, Any], recovery: dict[str, Any], med: dict[str, Any]
) -> list[list[str]]:
    runs = load_doc["runs"]
    rows = []
    for n in (1, 10, 100):
        ff, tr, naive = (
            find(runs, k, n, None, False) for k in ("ff-group", "transport", "naive-sqlite")
        )
        if ff and tr and naive:
            f = ff["window"]["msgs_per_s"]
            rows.append(
                [
                    f"group msgs/s ÷ transport limit, {n} stream(s)",
                    f"{f / tr['window']['msgs_per_s']:.2f}x",
                    ">= 0.6x",
                ]
            )
            rows.append(
                [
                    f"group msgs/s ÷ naive SQLite, {n} stream(s)",
                    f"{f / naive['window']['msgs_per_s']:.1f}x",
                    ">= 30x",
                ]
            )
    lat = find(runs, "ff-group", 10, 10_000, True)
    tr10 = find(runs, "transport", 10, 10_000, True)
    fsync_p99 = journal["disk_fsync"]["p99_us"]
    if lat:
        ll = lat["latency"]
        rows.append(
            [
                "send -> accepted p99 at 10k msgs/s (µs)",
                fmt(ll["accepted"]["p99_us"]),
                "<= 50 µs added",
            ]
        )
        rows.append(
            [
                "callback -> accepted p99 at 10k msgs/s (µs): fastfeed's own addition",
                fmt(ll["added"]["p99_us"], 1),
                "<= 50 µs",
            ]
        )
        if tr10:
            extra = ll["accepted"]["p99_us"] - tr10["latency"]["callback"]["p99_us"]
            rows.append(
                [
                    "send -> accepted p99 minus transport's send -> callback p99, 10k msgs/s (µs)",
                    fmt(extra),
                    "<= 50 µs",
                ]
            )
        bound = defaults.GROUP_COMMIT_MS * 1000 + 2 * fsync_p99
        rows.append(
            [
                f"send -> durable p99 at 10k msgs/s (µs); disk fsync p99 {fsync_p99:,.0f} µs",
                fmt(ll["durable"]["p99_us"]),
                f"<= {bound:,.0f} µs (2 ms + 2 x fsync p99)",
            ]
        )
    rows.append(
        [
            f"recovery start -> resumed, {recovery['journal_mib']} MiB journal, "
            f"{recovery['unsnapshotted_records']:,} unsnapshotted (s)",
            f"{recovery['start_to_resumed_s']:.2f}",
            "<= 2 s (1 GiB)",
        ]
    )
    rows.append(
        [
            "journal append, 200-byte record, median (ns)",
            fmt(med.get("test_journal_append_200b")),
            "<= 100 ns",
        ]
    )
    rows.append(
        [
            "journal group commit (records/s, one appending thread)",
            fmt(journal["group_commit"]["records_per_s"]),
            ">= 5,000,000",
        ]
    )
    rows.append(
        [
            "durable-LSN lag p99 at 100k records/s (ms)",
            fmt(journal["durable_lag"]["p99_us"] / 1000, 2),
            "<= 5 ms",
        ]
    )
    return rows


def plot(runs: list[dict[str, Any]]) -> None:
    """Two panels (accepted, durable), one line per configuration in the same style in both."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6), sharey=True)
    xs = list(range(len(PCTS)))
    colors = {1_000: "tab:blue", 10_000: "tab:green", 100_000: "tab:orange", None: "tab:red"}
    styles = {"ff-group": "-", "ff-always": ":", "ff-none": "-.", "transport": "--"}
    handles: dict[str, Any] = {}
    for ax, metric, title in (
        (axes[0], "accepted", "send -> journal accepted (transport limit: send -> callback)"),
        (axes[1], "durable", "send -> durable (the group commit covering it returned)"),
    ):
        for r in runs:
            if not r["latency_run"]:
                continue
            own = "callback" if r["kind"] == "transport" and metric == "accepted" else metric
            hist = r["latency"].get(own)
            if not hist or not hist.get("count"):
                continue
            rate = f"{r['rate'] // 1000}k msgs/s" if r["rate"] else "saturation"
            label = f"{LABELS[r['kind']].split(' (')[0]} @ {rate}"
            (line,) = ax.plot(
                xs,
                [hist[p] / 1000 for p in PCTS],
                styles[r["kind"]],
                color=colors[r["rate"]],
                marker="o",
                markersize=4,
            )
            handles.setdefault(label, line)
        ax.set_xticks(xs, [p.removesuffix("_us") for p in PCTS])
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms, log scale)")
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=3, fontsize=8)
    fig.suptitle("End-to-end latency percentiles, 10 depth streams on loopback (same run)")
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def render(command: str) -> list[str]:
    load_doc, journal, recovery = load("load"), load("journal"), load("recovery")
    micro = load("micro")
    # pytest-benchmark keeps every raw timing (megabytes); the statistics are what is kept.
    for bench in micro["benchmarks"]:
        bench["stats"].pop("data", None)
    write_result(RESULTS / "micro.json", micro)
    runs = load_doc["runs"]
    m = machine()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    lines = [
        f"Run of {datetime.date.today().isoformat()} at commit `{commit}`: `{command}`. "
        f"{m['cores']} cores, {m['cpu']}, disk {m['disk']}, kernel {m['kernel']}, "
        f"Python {m['python']}. Load windows: {load_doc['warmup_s']:g} s warm-up, "
        f"{load_doc['duration_s']:g} s measured. Every ratio compares runs of this one "
        "invocation, made minutes apart on the same machine.",
        "",
        "### Targets (reported, not asserted)",
        "",
    ]
    micro_table, medians = micro_rows(micro)
    lines += table(["measure", "this run", "target"], ratios(load_doc, journal, recovery, medians))
    lines += ["### Throughput at saturation (simulator --burst, ~225-byte depth frames)", ""]
    rows = []
    for r in runs:
        if r["latency_run"]:
            continue
        w = r["window"]
        sig = ""
        if "sigterm_exit_s" in r:
            sig = "> 60, killed" if r["sigterm_exit_s"] is None else f"{r['sigterm_exit_s']:.2f}"
        rows.append(
            [
                str(r["streams"]),
                LABELS[r["kind"]],
                fmt(w["msgs_per_s"]),
                fmt(w["cpu_us_per_msg"], 1),
                sig,
            ]
        )
    lines += table(
        ["streams", "client", "msgs/s recorded", "CPU µs/msg", "SIGTERM -> exit (s)"], rows
    )
    lines += [
        "fastfeed's msgs/s counts records made durable (`durable_lsn`) in the window; `none` "
        "counts accepted records. CPU is the whole recorder process (all threads).",
        "",
        "### Latency (10 streams; µs from the simulator's send stamp)",
        "",
    ]
    rows = []
    for r in runs:
        if not r["latency_run"]:
            continue
        rate = fmt(r["rate"]) if r["rate"] else "saturation"
        for name, h in r["latency"].items():
            if h.get("count"):
                rows.append(
                    [LABELS[r["kind"]], rate, fmt(r["window"]["msgs_per_s"]), name]
                    + [fmt(h[p], 1) for p in PCTS]
                )
    lines += table(
        ["client", "offered msgs/s", "achieved", "measure", "p50", "p90", "p99", "p99.9", "max"],
        rows,
    )
    lines += [
        "`callback`: send -> recorder's frame callback entered; `accepted`: -> journal append "
        "returned; `done`: -> adapter, tracker and batch done; `durable`: -> the group commit "
        "covering it published; `added`: callback -> accepted, fastfeed's own share.",
        "",
        f"![latency percentiles]({PLOT.name})",
        "",
        "### Journal (issue 2) and the disk",
        "",
    ]
    d, g, lag = journal["disk_fsync"], journal["group_commit"], journal["durable_lag"]
    lines += table(
        ["measure", "result"],
        [
            [
                "disk: 4 KiB write + fdatasync, p50 / p99 / max (µs)",
                f"{fmt(d['p50_us'])} / {fmt(d['p99_us'])} / {fmt(d['max_us'])}",
            ],
            [
                f"group commit: {g['records']:,} x 200 B appended then synced",
                f"{fmt(g['records_per_s'])} records/s",
            ],
            [
                f"durable-LSN lag at {fmt(lag['rate_achieved'])} records/s, p50 / p99 / max (µs)",
                f"{fmt(lag['p50_us'])} / {fmt(lag['p99_us'])} / {fmt(lag['max_us'])}",
            ],
        ],
    )
    lines += ["### Micro benchmarks (pytest-benchmark, ns per call)", ""]
    lines += table(["benchmark", "median", "mean", ""], micro_table)
    lines += ["### Recovery", ""]
    lines += table(
        [
            "journal",
            "on disk (preallocated segments)",
            "snapshotted records",
            "unsnapshotted",
            "start -> resumed (s)",
        ],
        [
            [
                f"{recovery['journal_mib']} MiB of records",
                f"{recovery['journal_bytes_on_disk'] / 2**20:,.0f} MiB",
                fmt(recovery["snapshotted_records"]),
                fmt(recovery["unsnapshotted_records"]),
                f"{recovery['start_to_resumed_s']:.3f}",
            ]
        ],
    )
    plot(runs)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("--command", default="bash bench/run.sh", help="what produced the results")
    args = parser.parse_args()
    text = DOC.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    body = "\n".join(render(args.command))
    DOC.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")


if __name__ == "__main__":
    main()
