"""The report of a reproduction as Markdown and self-contained HTML (figures inline as base64 PNG).

A report is a list of blocks: ("h1"|"h2"|"h3", text), ("p", text), ("ul", [items]),
("table", columns, rows, formats) and ("img", path, caption). ``render_md`` and ``render_html``
turn the same blocks into both files, so the two never disagree.
"""

from __future__ import annotations

import base64
import html
import math
import os

ERRATA = [
    ("9.1 channel reference action", "Read literally, 'the label favours the truly better action w.p. 1/2 + w eps' makes the two worlds' label laws identical (KL = 0).",
     "Labels are relative to the fixed reference pi^+(x): P_w(Z = 1 | hard) = 1/2 + w eps (channels.massart_p)."),
    ("9.2 easy-context labels", "Section 2 makes easy labels uninformative, Section 3 needs them to learn theta.",
     "easy_eps = 0 for the testing problem (Theorem 1's channel), 0.3 (80 % accurate) for the logistic learner."),
    ("9.3 queries vs draws", "Theorem 2 counts every context draw (~T/alpha) as a query although only T labels are requested.",
     "Every protocol reports draws and labels separately; the lower bound is in draws (rounds)."),
    ("9.4 no separation proved", "Theorem 1 applies to the oracle learner too; both rates are exp(-Theta(n alpha eps^2)).",
     "Oracle and oracle-free learners are measured side by side (figure and table below)."),
    ("9.5 'a testing mistake costs gamma'", "Exact only for outputs in {pi^+, pi^-}.",
     "Testing protocols output pi^{w_hat}; the logistic learner's gap is measured directly."),
    ("9.6 Theorem 3 algebra / dilution", "'T/p >= T/(alpha tau)' does not follow from p <= tau; false positives' labels are ignored.",
     "Exact error of keep-flagged + majority with dilution (bandits.exact); Theorem 3's T/(alpha tau) shown next to it."),
    ("9.7 X_hard in the mixture", "'Support of the second component' is all of R^d.", "Hardness is the latent component label z, P(z = 1) = alpha."),
    ("9.8 gamma in the mixture", "With sign rewards gamma = alpha x reward scale whatever the margin distribution.",
     "Rewards 1/2 +- s Delta/2, s = 1: gamma = alpha exactly."),
    ("9.9 Prop. 1 proof", "The text proof omits the normaliser (A.7 is correct).", "theory check (lead's tilting module)."),
    ("9.10 B.4", "Differentiates rho only, ignoring the lambda-dependence of the conditional expectations.", "theory check."),
    ("9.11 B.5 / B.8", "B.5 drops Wald's overshoot; B.8's per-hit KL m^2/(2 sigma^2) should be m.",
     "Exact SPRT (theory.sprt_exact) vs simulation below; B.8 shown failing in the channel table."),
    ("9.12 eq. (1) needs 3 actions", "The synthetic environment has 2 actions; the argument gives 2 alpha_S min m_j.",
     "Separate 3-action environment (envs.random_three_objective); both constants checked below."),
    ("9.13 context tilt vs action policy", "Section 3.4 tilts the context law, D1 optimises the action policy.",
     "rho(lambda) is the context tilt q_lambda(X_hard) (diagnostics.tilted_hard_mass), reported separately from pi_lambda."),
]


def fmt(v, spec=None):
    """Format a cell: floats compactly (inf as ∞), bools as yes/NO."""
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        if spec:
            return format(v, spec)
        a = abs(v)
        if a != 0 and (a >= 1e5 or a < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(v)


def table(columns, rows, formats=None):
    """A table block; ``columns`` is a list of (key, header) pairs."""
    return ("table", columns, rows, formats or {})


def render_md(blocks) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + b[1] + "\n")
        elif kind == "p":
            out.append(b[1] + "\n")
        elif kind == "ul":
            out.append("\n".join(f"- {it}" for it in b[1]) + "\n")
        elif kind == "table":
            _, cols, rows, fm = b
            out.append("| " + " | ".join(h for _, h in cols) + " |")
            out.append("|" + "---|" * len(cols))
            for r in rows:
                out.append("| " + " | ".join(fmt(r.get(k), fm.get(k)).replace("|", "\\|") for k, _ in cols) + " |")
            out.append("")
        elif kind == "img":
            out.append(f"![{b[2]}]({os.path.basename(b[1])})\n\n*{b[2]}*\n")
        elif kind == "raw_md":
            out.append(b[1] + "\n")
    return "\n".join(out)


def render_html(blocks, title) -> str:
    css = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
           "table{border-collapse:collapse;font-size:12px;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px;"
           "text-align:right}th{background:#f3f3f3}img{max-width:100%}code,pre{background:#f6f6f6}"
           ".cap{font-style:italic;color:#555;margin-bottom:1.5em}")
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{css}</style></head><body>"]
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{html.escape(b[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{html.escape(b[1])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{html.escape(it)}</li>" for it in b[1]) + "</ul>")
        elif kind == "table":
            _, cols, rows, fm = b
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for _, h in cols) + "</tr>")
            for r in rows:
                out.append("<tr>" + "".join(f"<td>{html.escape(fmt(r.get(k), fm.get(k)))}</td>" for k, _ in cols) + "</tr>")
            out.append("</table>")
        elif kind == "img":
            with open(b[1], "rb") as fh:
                data = base64.b64encode(fh.read()).decode()
            out.append(f"<img src='data:image/png;base64,{data}' alt='{html.escape(b[2])}'><div class='cap'>{html.escape(b[2])}</div>")
        elif kind == "raw_md":
            out.append(f"<pre>{html.escape(b[1])}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def errata_block():
    return table([("item", "paper note"), ("problem", "problem in v3"), ("resolution", "what the code does")],
                 [{"item": a, "problem": b, "resolution": c} for a, b, c in ERRATA])
