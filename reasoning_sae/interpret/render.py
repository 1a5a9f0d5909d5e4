"""Static HTML dashboards from feature records: `index.html` and `features/<id>.html`.

Self-contained pages (inline CSS and SVG, no JavaScript, no external assets) so they open offline from disk.
Jinja2 autoescaping is on: token text from the corpus is always escaped; only the SVG charts built here from numbers
are marked safe."""

from collections.abc import Mapping, Sequence
from pathlib import Path

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup

TEMPLATES = Path(__file__).parent / "templates"
VISIBLE = {"\n": "⏎", "\r": "␍", "\t": "⇥"}


def visible(token: str, spaces: bool = False) -> str:
    """Token text with whitespace made visible (newlines as ⏎; spaces as ␣ too when `spaces`)."""
    for raw, shown in VISIBLE.items():
        token = token.replace(raw, shown)
    if spaces:
        token = token.replace(" ", "␣")
    return token


def shade(act: float | None, f_max: float, rgb: str = "255,106,0") -> str:
    """CSS background whose opacity is the activation as a fraction of f_max."""
    alpha = 0.0 if not act or not f_max or act != act else min(max(act / f_max, 0.0), 1.0)
    return f"background-color:rgba({rgb},{alpha:.3f})"


def fmt(value, digits: int = 3) -> str:
    """Numbers for humans: 3 significant digits, scientific for tiny or huge magnitudes."""
    if value is None:
        return "–"
    value = float(value)
    if value != 0 and not 1e-3 <= abs(value) < 1e5:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def histogram_svg(edges: Sequence[float], counts: Sequence[int], color: str = "#e8710a", log_x: bool = False,
                  width: int = 400, height: int = 110) -> Markup:
    """A bar chart as inline SVG (numbers only, hence safe to mark up); a short note when there is no data."""
    if not counts or max(counts) == 0:
        return Markup('<p class="muted">no non-zero values</p>')
    n, top, pad = len(counts), max(counts), 14
    bar_w = width / n
    bars = "".join(
        f'<rect x="{i * bar_w:.2f}" y="{height - pad - (c / top) * (height - pad - 4):.2f}" width="{bar_w * 0.92:.2f}"'
        f' height="{(c / top) * (height - pad - 4):.2f}" fill="{color}"><title>{fmt(edges[i])}–{fmt(edges[i + 1])}:'
        f' {int(c)}</title></rect>' for i, c in enumerate(counts))
    axis = (f'<text x="0" y="{height - 2}" font-size="10">{fmt(edges[0])}</text>'
            f'<text x="{width}" y="{height - 2}" font-size="10" text-anchor="end">{fmt(edges[-1])}</text>'
            f'<text x="{width / 2}" y="{height - 2}" font-size="10" text-anchor="middle">'
            f'{"log scale" if log_x else ""}</text>')
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                  f'viewBox="0 0 {width} {height}" role="img">{bars}{axis}</svg>')


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(visible=visible, shade=shade, fmt=fmt)
    env.globals.update(histogram_svg=histogram_svg)
    return env


def summary(record: Mapping) -> str:
    """One line for the index: the distinct tokens the feature fires most on, and the tokens it promotes."""
    fires = list(dict.fromkeys(visible(c["token"], spaces=True) for c in record.get("top_contexts", [])))[:5]
    promotes = [visible(t["token"], spaces=True) for t in record.get("logits", {}).get("top", [])[:4]]
    return f"fires on: {' '.join(fires) or '–'} | promotes: {' '.join(promotes) or '–'}"


def render_feature(record: Mapping, meta: Mapping | None = None) -> str:
    return environment().get_template("feature.html.j2").render(r=record, meta=meta or {})


def render_index(records: Sequence[Mapping], meta: Mapping | None = None) -> str:
    rows = sorted(records, key=lambda r: -(r.get("score") or {}).get("reason_score", float("-inf")))
    return environment().get_template("index.html.j2").render(
        records=rows, summaries={r["feature"]: summary(r) for r in rows}, meta=meta or {})


def write_site(records: Mapping[int, Mapping], out: Path, meta: Mapping | None = None) -> Path:
    """index.html plus features/<id>.html under `out`; returns the index path."""
    out = Path(out)
    (out / "features").mkdir(parents=True, exist_ok=True)
    for feature, record in records.items():
        (out / "features" / f"{feature}.html").write_text(render_feature(record, meta), encoding="utf-8")
    index = out / "index.html"
    index.write_text(render_index(list(records.values()), meta), encoding="utf-8")
    return index
