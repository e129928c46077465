"""Plain-text and Markdown tables of theory-check rows (shared by the CLI and the reports)."""

from __future__ import annotations


def _num(x: float) -> str:
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e4 or abs(x) < 1e-3:
        return f"{x:.4e}"
    return f"{x:.6g}"


def _status(r) -> str:
    if r.erratum:
        return "FAIL (erratum)" if not r.passed else "holds (erratum)"
    return "PASS" if r.passed else "FAIL"


def theory_table(rows) -> str:
    """Aligned text table: id, reference, closed form, independent, error, tolerance, status."""
    head = ("id", "paper", "closed form", "independent", "error", "tol", "status")
    body = [
        (r.id, r.ref, _num(r.closed_form), _num(r.independent), _num(r.error), _num(r.tol), _status(r))
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [line(head), line(tuple("-" * w for w in widths))]
    for r, b in zip(rows, body):
        out.append(line(b))
        out.append("    " + r.what + (f"  [{r.method}]" if r.method else "") + (f"  note: {r.note}" if r.note else ""))
    npass = sum(r.passed for r in rows if not r.erratum)
    nreg = sum(not r.erratum for r in rows)
    nerr = sum(r.erratum for r in rows)
    out.append("")
    out.append(f"{npass}/{nreg} checks pass; {nerr} erratum rows show statements of the paper as written.")
    return "\n".join(out)


def theory_markdown(rows) -> str:
    """The same rows as a Markdown table."""
    out = ["| id | paper | statement | closed form | independent | method | error | tol | status |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        what = r.what.replace("|", "\\|") + (f" ({r.note})" if r.note else "")
        out.append(f"| {r.id} | {r.ref} | {what} | {_num(r.closed_form)} | {_num(r.independent)} | "
                   f"{r.method} | {_num(r.error)} | {_num(r.tol)} | {_status(r)} |")
    return "\n".join(out)
