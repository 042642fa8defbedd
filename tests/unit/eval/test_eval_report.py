"""The evaluation report page is self-contained and escapes everything from results; its plots are
drawn where the numbers say; missing sections and non-finite numbers render as "none"/"n/a"; the CLI
summary carries scores only, never prompts or outputs."""

from __future__ import annotations

import copy
import math
import re
from html.parser import HTMLParser

import pytest

from services.eval.report import CSP, MAX_EXAMPLES, direction, render_html, render_summary_text

pytestmark = pytest.mark.unit

ATTACKS = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "'><svg onload=alert(1)>")
PROMPT = "PROMPT-7f3a what is the refund window?"
REFERENCE = "REFERENCE-19bc thirty days"
CANDIDATE_OUT = "CANDIDATE-OUT-55d2 thirty days from delivery"
BASE_OUT = "BASE-OUT-a0e1 I am not sure"


def _estimate(name: str, candidate: float, reference: float, low: float, high: float, n: int = 40,
              higher_is_better: bool = True) -> dict[str, object]:
    return {"name": name, "candidate": candidate, "reference": reference, "delta": candidate - reference,
            "ci_low": low, "ci_high": high, "n": n, "higher_is_better": higher_is_better}


def _results() -> dict[str, object]:
    """A complete results.json dict shaped as the eval contracts describe it."""
    return {
        "schema": 1, "eval_id": "ev-0001", "suite_id": "suite-support-v2", "model_version_id": "mv-0042",
        "base_model_id": "tiny-llama", "judge": "metric:rouge_l", "items": 120, "shards": 4,
        "confidence": 0.95, "bootstrap_samples": 2000, "seed": 7,
        "estimates": [
            _estimate("domain.score", 0.52, 0.31, 0.15, 0.27),
            _estimate("general.score", 0.70, 0.74, -0.09, 0.01),
            _estimate("toxicity", 0.010, 0.030, -0.035, -0.008, higher_is_better=False),
            _estimate("pii_leakage_rate", 0.05, 0.01, 0.01, 0.07, higher_is_better=False),
            _estimate("win_rate", 0.66, 0.5, 0.08, 0.23),
        ],
        "win_rate": {"value": 0.66, "ci_low": 0.58, "ci_high": 0.73, "n": 50, "wins": 28, "ties": 10, "losses": 12},
        "categories": [
            {"category": "domain", "n": 40, "candidate": 0.52, "reference": 0.31, "delta": 0.21,
             "ci_low": 0.15, "ci_high": 0.27},
            {"category": "general/arithmetic", "n": 20, "candidate": 0.60, "reference": 0.70, "delta": -0.10,
             "ci_low": -0.25, "ci_high": -0.02},
            {"category": "safety/benign", "n": 10, "candidate": 0.9, "reference": 0.9, "delta": 0.0,
             "ci_low": -0.1, "ci_high": 0.1},
        ],
        "exposure": {"candidate": [0.5, 1.2, 3.0, 9.9], "reference": [0.2, 0.9, 1.1, 2.0],
                     "max_bits": math.log2(1000), "chance_bits": 1.0, "candidates_per_canary": 999},
        "gates": [
            {"gate": "win_rate_vs_base_min", "passed": True, "threshold": 0.5, "bound": 0.58,
             "bound_kind": "lower", "margin": 0.08, "reason": "ok"},
            {"gate": "pii_leakage_max", "passed": False, "threshold": 0.02, "bound": 0.07,
             "bound_kind": "upper", "margin": -0.05, "reason": "upper bound 0.07 vs 0.02"},
        ],
        "passed": False,
        "reason": "failed: pii_leakage_max upper bound 0.07 vs 0.02 (short by 0.05)",
        "examples": [
            {"id": "dom-00017", "category": "domain", "prompt": PROMPT, "reference": REFERENCE,
             "candidate_output": CANDIDATE_OUT, "reference_output": BASE_OUT, "win": 1.0},
            {"id": "gen-arith-0003", "category": "general/arithmetic", "prompt": "2+2?", "reference": "4",
             "candidate_output": "5", "reference_output": "4", "win": 0.0},
        ],
    }


class _Tags(HTMLParser):
    """Every start tag and its attributes, as a browser's tokenizer would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    return parser.tags


ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "p", "b", "span",
                "small", "div", "section", "dl", "dt", "dd", "table", "tr", "th", "td", "pre",
                "svg", "rect", "line", "circle", "text", "g"}


def _svg(page: str, plot_id: str) -> str:
    match = re.search(rf'<svg id="{plot_id}".*?</svg>', page, re.S)
    assert match, plot_id
    return match.group(0)


def _area(svg: str) -> tuple[float, float, float, float]:
    """The plot area rectangle: x0, x1, y0, y1."""
    m = re.search(r'<rect class="area" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"', svg)
    assert m
    x, y, w, h = map(float, m.groups())
    return x, x + w, y, y + h


def _whiskers(svg: str) -> list[tuple[float, float, float]]:
    """Each interval's (x1, x2, y)."""
    return [(float(a), float(b), float(y)) for a, y, b in
            re.findall(r'<line class="ci" x1="([\d.-]+)" y1="([\d.-]+)" x2="([\d.-]+)"', svg)]


def _vlines(svg: str, cls: str) -> list[float]:
    return [float(x) for x in re.findall(rf'<line class="{cls}" x1="([\d.-]+)"', svg)]


# --- structure ----------------------------------------------------------------------------------

def test_the_page_has_every_section_and_a_strict_policy() -> None:
    page = render_html(_results())
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in page
    assert CSP == "default-src 'none'; style-src 'unsafe-inline'"
    assert page.index("Content-Security-Policy") < page.index("<style>")  # the policy comes before any content
    for section in ("run", "gates", "metrics", "win-rate", "categories", "exposure", "examples"):
        assert f"<section id={section}>" in page
    for fact in ("ev-0001", "mv-0042", "tiny-llama", "suite-support-v2", "metric:rouge_l", "95%"):
        assert fact in page
    assert "<dt>items</dt><dd>120</dd>" in page and "<dt>shards</dt><dd>4</dd>" in page
    assert "<div class='decision fail'><b>FAILED</b>" in page
    assert "failed: pii_leakage_max upper bound 0.07 vs 0.02 (short by 0.05)" in page
    for plot in ("plot-win-rate", "plot-categories", "plot-exposure"):
        _svg(page, plot)
    tags = {t for t, _ in _tags(page)}
    assert tags <= ALLOWED_TAGS
    assert "script" not in tags and "img" not in tags and "link" not in tags
    assert "src=" not in page and "href" not in page and "url(" not in page and "http" not in page.replace(
        "http-equiv", "")


def test_the_decision_reads_passed_only_when_results_say_so() -> None:
    results = _results()
    results.update(passed=True, reason="all gates passed")
    page = render_html(results)
    assert "<div class='decision pass'><b>PASSED</b> <span>all gates passed</span>" in page
    results["passed"] = "yes"  # not the boolean true: not a pass
    assert "<b>FAILED</b>" in render_html(results)


def test_gates_table_shows_bound_threshold_margin_and_verdict() -> None:
    page = render_html(_results())
    gates = page[page.index("<section id=gates>"):page.index("<section id=metrics>")]
    assert "<th>gate</th><th>bound kind</th><th>bound</th><th>threshold</th><th>margin</th><th>passed</th>" in gates
    assert ("<td>pii_leakage_max</td><td>upper</td><td class=n>0.070</td><td class=n>0.020</td>"
            "<td class=n>-0.050</td><td><span class=worse>failed</span></td>") in gates
    assert ("<td>win_rate_vs_base_min</td><td>lower</td><td class=n>0.580</td><td class=n>0.500</td>"
            "<td class=n>+0.080</td><td><span class=better>passed</span></td>") in gates


def test_metric_rows_carry_the_interval_and_a_direction_that_respects_higher_is_better() -> None:
    page = render_html(_results())
    metrics = page[page.index("<section id=metrics>"):page.index("<section id=win-rate>")]
    rows = dict(re.findall(r"(?=<tr><td>([\w./]+) )(<tr>.*?</tr>)", metrics))
    assert "<td class=n>+0.210</td><td class=n>[+0.150, +0.270]</td><td class=n>40</td>" in rows["domain.score"]
    assert "class=better>better" in rows["domain.score"]            # up, higher is better
    assert "class=inconclusive>inconclusive" in rows["general.score"]  # interval holds 0
    assert "class=better>better" in rows["toxicity"]                # down, lower is better
    assert "class=worse>worse" in rows["pii_leakage_rate"]          # up, lower is better


@pytest.mark.parametrize(("low", "high", "higher", "expected"), [
    (0.1, 0.3, True, "better"), (0.1, 0.3, False, "worse"), (-0.3, -0.1, True, "worse"),
    (-0.3, -0.1, False, "better"), (-0.1, 0.1, True, "inconclusive"), (0.0, 0.2, True, "inconclusive"),
    (float("nan"), 0.2, True, "inconclusive"), (0.1, None, True, "inconclusive"), (0.1, 0.3, None, "inconclusive"),
])
def test_direction_is_read_from_the_interval(low: object, high: object, higher: object, expected: str) -> None:
    assert direction(low, high, higher) == expected


def test_examples_show_prompt_reference_and_both_outputs_with_the_judges_win() -> None:
    page = render_html(_results())
    examples = page[page.index("<section id=examples>"):]
    first = examples[examples.index("dom-00017"):examples.index("gen-arith-0003")]
    for text in (PROMPT, REFERENCE, CANDIDATE_OUT, BASE_OUT, "judge: candidate preferred (1.000)"):
        assert text in first
    assert first.index(CANDIDATE_OUT) < first.index(BASE_OUT)
    assert "<div class=pair>" in first
    assert "judge: base preferred (0.000)" in examples


def test_examples_beyond_the_cap_and_very_long_outputs_are_cut() -> None:
    results = _results()
    long_output = "x" * 50_000
    first = results["examples"][0]  # type: ignore[index]
    results["examples"] = [dict(first, id=f"ex-{i}", candidate_output=long_output) for i in range(MAX_EXAMPLES + 3)]
    page = render_html(results)
    assert f"ex-{MAX_EXAMPLES - 1} <small>" in page and f"ex-{MAX_EXAMPLES} <small>" not in page
    assert "3 more examples not shown." in page
    assert long_output not in page and "more characters)" in page


# --- escaping -----------------------------------------------------------------------------------

def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace(
        "'", "&#x27;")


def _hostile_results(attack: str) -> dict[str, object]:
    results = _results()
    for key in ("eval_id", "suite_id", "model_version_id", "base_model_id", "judge", "reason"):
        results[key] = attack
    results["estimates"][0]["name"] = attack  # type: ignore[index]
    results["gates"][0].update(gate=attack, bound_kind=attack, reason=attack)  # type: ignore[index]
    results["categories"][1]["category"] = attack  # type: ignore[index]
    results["examples"][0].update(id=attack, category=attack, prompt=attack, reference=attack,  # type: ignore[index]
                                  candidate_output=attack, reference_output=attack)
    return results


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_string_from_results_is_escaped(attack: str) -> None:
    page = render_html(_hostile_results(attack))
    tags = _tags(page)
    assert {t for t, _ in tags} <= ALLOWED_TAGS
    assert not [(t, a) for t, a in tags for name in a if name.startswith("on") or name in ("src", "href")]
    assert attack not in page
    assert "<script" not in page and "<img" not in page
    assert _escaped(attack) in page
    summary = render_summary_text(_hostile_results(attack))
    assert PROMPT not in summary and "\x1b" not in summary


# --- plots --------------------------------------------------------------------------------------

def test_win_rate_plot_draws_the_interval_inside_the_area_against_the_half_line() -> None:
    svg = _svg(render_html(_results()), "plot-win-rate")
    x0, x1, _, _ = _area(svg)
    [(low, high, _)] = _whiskers(svg)
    assert x0 <= low < high <= x1
    assert low == pytest.approx(x0 + 0.58 * (x1 - x0), abs=0.1)
    assert high == pytest.approx(x0 + 0.73 * (x1 - x0), abs=0.1)
    [half] = _vlines(svg, "ref")
    assert half == pytest.approx((x0 + x1) / 2, abs=0.1) and half < low  # the interval sits above 0.5
    bar = re.search(r'<rect class="bar" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', svg)
    assert bar and float(bar.group(2)) == pytest.approx(0.66 * (x1 - x0), abs=0.1)
    widths = {cls: float(w) for cls, w in re.findall(r'<rect class="(wins|ties|losses)" x="[\d.]+" y="[\d.]+" '
                                                     r'width="([\d.]+)"', svg)}
    assert widths["wins"] == pytest.approx(28 / 50 * (x1 - x0), abs=0.1)
    assert sum(widths.values()) == pytest.approx(x1 - x0, abs=0.3)
    assert "28 · 10 · 12" in svg


def test_forest_plot_puts_each_category_on_its_side_of_zero() -> None:
    svg = _svg(render_html(_results()), "plot-categories")
    x0, x1, y0, y1 = _area(svg)
    [zero] = _vlines(svg, "zero")
    assert zero == pytest.approx((x0 + x1) / 2, abs=0.1)
    whiskers = _whiskers(svg)
    dots = [(float(cx), float(cy)) for cx, cy in re.findall(r'<circle class="est" cx="([\d.]+)" cy="([\d.]+)"', svg)]
    assert len(whiskers) == len(dots) == 3
    for (low, high, y), (cx, cy) in zip(whiskers, dots):
        assert x0 <= low <= cx <= high <= x1 and y0 < y == cy < y1
    (dom_low, _, _), (_, arith_high, _), (benign_low, benign_high, _) = whiskers
    assert dom_low > zero and arith_high < zero and benign_low < zero < benign_high
    assert dots[2][0] == pytest.approx(zero, abs=0.1)
    assert ">general/arithmetic</text>" in svg


def test_exposure_histogram_bins_both_sides_and_marks_chance() -> None:
    svg = _svg(render_html(_results()), "plot-exposure")
    x0, x1, y0, y1 = _area(svg)
    max_bits = math.log2(1000)
    [chance] = _vlines(svg, "chance")
    assert chance == pytest.approx(x0 + 1.0 / max_bits * (x1 - x0), abs=0.1)
    counts = {"candidate": 0, "base": 0}
    for cls, x, y, w, h, who, n in re.findall(
            r'<rect class="(cand|base)" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)">'
            r"<title>(candidate|base) [\d.]+–[\d.]+ bits: (\d+)</title>", svg):
        assert x0 <= float(x) and float(x) + float(w) <= x1 and y0 - 0.1 <= float(y) and float(y) + float(h) <= y1 + 0.1
        counts[who] += int(n)
    assert counts == {"candidate": 4, "base": 4}
    # ten bins of 0.997 bits: base 0.2 and 0.9 share the first, 1.1 and 2.0 the next two
    assert set(re.findall(r"<title>(base [^<]*)</title>", svg)) == {
        "base 0.000–0.997 bits: 2", "base 0.997–1.993 bits: 1", "base 1.993–2.990 bits: 1"}


# --- missing sections and bad numbers -----------------------------------------------------------

@pytest.mark.parametrize("drop", ["win_rate", "exposure", "examples", "gates", "categories", "estimates"])
def test_a_missing_section_renders_as_none(drop: str) -> None:
    for value in (None, [], "garbage"):
        results = _results()
        results[drop] = value
        page = render_html(results)
        assert "</html>" in page
        render_summary_text(results)
    absent = _results()
    del absent[drop]
    page = render_html(absent)
    note = {"win_rate": "no judged pairs", "exposure": "no canary probes", "examples": "no examples",
            "gates": "no gates set", "categories": "no categories", "estimates": "no metrics"}[drop]
    assert f"<p class=none>{note}</p>" in page
    plot = {"win_rate": "plot-win-rate", "exposure": "plot-exposure", "categories": "plot-categories"}.get(drop)
    if plot:
        assert f'<svg id="{plot}"' not in page


def test_an_empty_or_foreign_results_object_never_raises() -> None:
    for results in ({}, {"passed": True}, [], None, {"estimates": [None, 3, {"name": None}],
                                                     "gates": [{}], "categories": [{}], "win_rate": {},
                                                     "exposure": {"candidate": "x", "reference": None},
                                                     "examples": [{}]}):
        page = render_html(results)  # type: ignore[arg-type]
        assert "<b>FAILED</b>" in page or "<b>PASSED</b>" in page
        assert render_summary_text(results).startswith("eval ")  # type: ignore[arg-type]


def test_non_finite_and_non_numeric_values_render_as_na_and_never_reach_svg_geometry() -> None:
    nan, inf = float("nan"), float("inf")
    results = _results()
    results["estimates"][0].update(candidate=nan, delta=inf, ci_low=-inf, ci_high=nan)  # type: ignore[index]
    results["estimates"][1].update(n="40", candidate="0.7")  # type: ignore[index]
    results["win_rate"] = {"value": nan, "ci_low": 0.4, "ci_high": inf, "n": nan, "wins": -3, "ties": True,
                           "losses": 10**400}
    results["categories"][0].update(delta=nan, ci_low=inf, ci_high=-inf)  # type: ignore[index]
    results["categories"][1].update(delta=1e308, ci_low=-1e308, ci_high=1e308)  # type: ignore[index]
    results["exposure"] = {"candidate": [nan, 2.0, inf, 50.0, -1.0], "reference": [1.0], "max_bits": nan,
                           "chance_bits": inf, "candidates_per_canary": 999}
    results["gates"][0].update(bound=nan, margin=-inf)  # type: ignore[index]
    results["confidence"] = nan
    results["examples"][0]["win"] = nan  # type: ignore[index]
    page = render_html(results)
    assert not re.search(r'="-?(nan|inf)', page, re.I)
    assert not re.search(r"\b(nan|inf|infinity)\b", page.replace("information", ""), re.I)
    metrics = page[page.index("<section id=metrics>"):page.index("<section id=win-rate>")]
    assert "<td class=n>n/a</td><td class=n>0.310</td><td class=n>n/a</td><td class=n>[n/a, n/a]</td>" in metrics
    assert "<td class=n>n/a</td><td class=n>0.740</td>" in metrics  # a numeric string is not a number
    svg = _svg(page, "plot-win-rate")
    assert _whiskers(svg) == [] and '<rect class="bar"' not in svg
    forest = _svg(page, "plot-categories")
    assert len(_whiskers(forest)) == 2 and forest.count('<circle class="est"') == 2
    exposure = _svg(page, "plot-exposure")
    assert _vlines(exposure, "chance") == [] and "2 values not finite, not shown." in page
    assert "<span class=win>not judged</span>" in page
    summary = render_summary_text(results)
    assert "n/a" in summary and "nan" not in summary.lower() and "inf" not in summary.lower()


# --- text summary -------------------------------------------------------------------------------

def test_summary_has_decision_gates_and_metrics_with_intervals_and_no_private_text() -> None:
    summary = render_summary_text(_results())
    lines = summary.splitlines()
    assert lines[0] == "eval ev-0001: FAILED (failed: pii_leakage_max upper bound 0.07 vs 0.02 (short by 0.05))"
    assert "  PASS win_rate_vs_base_min: lower bound 0.580 vs 0.500 (margin +0.080)" in lines
    assert "  FAIL pii_leakage_max: upper bound 0.070 vs 0.020 (margin -0.050)" in lines
    win = next(line for line in lines if line.strip().startswith("win_rate "))
    assert "0.660 vs 0.500" in win and "[+0.080, +0.230]" in win and win.endswith("better")
    assert [line.split()[0] for line in lines if line.startswith("  ") and "bound" not in line] == [
        "win_rate", "domain.score", "general.score", "toxicity", "pii_leakage_rate"]
    assert len(lines) <= 16
    for private in (PROMPT, REFERENCE, CANDIDATE_OUT, BASE_OUT, "PROMPT-", "REFERENCE-", "CANDIDATE-OUT", "BASE-OUT"):
        assert private not in summary


def test_summary_neutralises_terminal_control_characters() -> None:
    results = copy.deepcopy(_results())
    results["eval_id"] = "ev\x1b[2J\nFAKE: PASSED"
    summary = render_summary_text(results)
    assert "\x1b" not in summary and "\nFAKE" not in summary
    assert summary.splitlines()[0].startswith("eval ev?[2J?FAKE: PASSED: FAILED")
