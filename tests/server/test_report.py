"""report.md and its plot: a device's id or error text is shown as written and can neither inject
markdown nor stop the report (matplotlib reads `$...$` as mathtext and raises on a bad formula)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

from fedpriv.config import RunConfig
from server.server_app import run_federation
from tests.server.fake_federation import FakeFederation

matplotlib.use("Agg")

MATHTEXT_ID = r"phone-$\frac{1$"  # an unbalanced formula: matplotlib's mathtext parser raises on it
MARKDOWN_ID = "ward|3_*x*_[link](http://x)<b>"
NEWLINE_ID = "c2\n# Injected heading\n| x | y |"


def _run(tmp_path: Path, clients: list[str]) -> tuple[Path, FakeFederation]:
    out = tmp_path / "run"
    grid = FakeFederation(clients)
    run_federation(grid, RunConfig(num_clients=len(clients), rounds=2, out=str(out)).validated())
    return out, grid


def test_ids_that_look_like_mathtext_or_markdown_are_shown_as_written(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, ["c0", MATHTEXT_ID, MARKDOWN_ID])
    report = (out / "report.md").read_text()
    assert (out / "perplexity_epsilon.png").stat().st_size > 10_000
    rows = [line for line in report.splitlines() if line.startswith("| ") and not line.startswith("| client")]
    assert len(rows) == 3
    assert rows[1].startswith(r"| phone-\$\\frac\{1\$ |") and rows[2].startswith(r"| ward\|3\_\*x\*\_\[link\]")
    for row in rows:
        assert row.count(" | ") == 9  # no cell split by a "|" in the id: 10 cells, 9 inner separators
    # Markup characters are backslash-escaped: no link, no HTML tag, no emphasis survives.
    assert not re.search(r"(?<!\\)\]\(|(?<!\\)<b|(?<!\\)\*x", "\n".join(rows))


def test_a_client_id_with_a_line_break_cannot_inject_markdown(tmp_path: Path) -> None:
    out, grid = _run(tmp_path, ["c0", "c1", NEWLINE_ID])
    report = (out / "report.md").read_text()
    lines = report.splitlines()
    assert "# Injected heading" not in lines and "| x | y |" not in lines
    node = grid.node_of(NEWLINE_ID)
    # The id is refused (control characters) and listed, visibly escaped, among the rejected replies.
    assert any(line.startswith(f"- round 1: node {node}: ") and "holds control characters" in line for line in lines)
    assert all("\n" not in cell for cell in lines)


def test_escaping_helpers() -> None:
    from server.report import markdown_text, plot_label, visible

    assert visible("a\nb\tc\x00") == "a\\nb\\tc\\x00"
    assert markdown_text("a|b*c_d`e$f[g]<h>#!&") == r"a\|b\*c\_d\`e\$f\[g\]\<h\>\#\!\&"
    assert markdown_text("hospital-00-cardiology") == "hospital-00-cardiology"  # ordinary ids stay readable
    assert plot_label("$x$") == r"\$x\$"
    assert plot_label("_hidden") == " _hidden"  # matplotlib skips legend labels that start with '_'


def test_a_mathtext_label_would_crash_the_plot_and_the_escaped_one_does_not(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from server.report import plot_label

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label=MATHTEXT_ID)
    ax.legend()
    with pytest.raises(ValueError):
        fig.savefig(tmp_path / "raw.png")
    plt.close(fig)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label=plot_label(MATHTEXT_ID))
    ax.legend()
    fig.savefig(tmp_path / "escaped.png")
    plt.close(fig)


def test_a_failing_plot_still_leaves_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = _run(tmp_path, ["c0", "c1"])
    (out / "report.md").unlink()

    def broken(record, path):
        raise RuntimeError("no display")

    from server import report as report_module
    from server.run_record import RunRecord, load_metrics

    monkeypatch.setattr(report_module, "plot", broken)

    data = load_metrics(out / "metrics.json")
    report_module.write_report(RunRecord.from_json(RunConfig(**data["config"]), out, data))
    report = (out / "report.md").read_text()
    assert "(no plot: RuntimeError: no display)" in report and "| c1 |" in report


def test_under_dp_the_report_reads_the_held_out_metrics_from_the_device_logs(tmp_path: Path) -> None:
    """metrics.json holds what the server received; a simulation's report completes it from the
    devices' own logs, and says so, and never overwrites what the server recorded."""
    from fedpriv.device_log import append_entry
    from server.report import write_report
    from server.run_record import RunRecord

    config = RunConfig(num_clients=1, rounds=1, out=str(tmp_path)).validated()
    record = RunRecord(config=config, out_dir=tmp_path)
    record.rounds[1] = {"c0": {"client_id": "c0", "trained": True, "epsilon": 1.5}}
    append_entry(tmp_path / "devices" / "c0", "evaluate", 0, {"eval_perplexity": 40.0})
    append_entry(tmp_path / "devices" / "c0", "evaluate", 1, {"eval_perplexity": 25.5, "eval_bits_per_byte": 3.25, "epsilon": 99.0})
    without = write_report(record).read_text()
    assert "| c0 | – | – | – |" in without and "the server records only what a mechanism covers" in without
    report = write_report(record, tmp_path / "devices").read_text()
    assert "| c0 | 40.00 | 25.50 | 3.250 |" in report and "come from the devices' own logs" in report
    assert record.rounds[1]["c0"] == {"client_id": "c0", "trained": True, "epsilon": 1.5}  # the record itself unchanged
